//! Signing up, in and out, and who I am.
//!
//! The forms are `ActionForm`s: with JavaScript they call the server functions and
//! reload the app on success; without it they post to the same functions, which
//! answer with a redirect (to the app, or back to the form with the error).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Who the page is for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Me {
    /// The signed-in user's name.
    pub user: Option<String>,
    pub admin: bool,
    /// Whether visitors without an account may chat.
    pub guest_access: bool,
}

#[server(endpoint = "me", output = crate::codec::Json)]
pub async fn current_user() -> Result<Me, AppError> {
    use crate::accounts::auth::Identity;
    let state = crate::server::session::state()?;
    let me = match crate::server::session::identity().await? {
        Some(Identity::User(user)) => Me { user: Some(user.username), admin: user.is_admin, guest_access: false },
        _ => Me::default(),
    };
    Ok(Me { guest_access: state.config.guest_access, ..me })
}

#[server(endpoint = "sign_up", output = crate::codec::Json)]
pub async fn sign_up(username: String, password: String) -> Result<(), AppError> {
    use crate::server::session;
    let state = session::state()?;
    let result = async {
        let user = state.get::<crate::accounts::auth::Auth>().sign_up(&username, &password).await?;
        let secret = state.get::<crate::accounts::auth::Auth>().start_session(&user).await?;
        Ok::<_, AppError>(secret)
    }
    .await;
    start_session(result, "/signup")
}

#[server(endpoint = "sign_in", output = crate::codec::Json)]
pub async fn sign_in(username: String, password: String) -> Result<(), AppError> {
    use crate::server::session;
    let state = session::state()?;
    let result = async {
        let user =
            state.get::<crate::accounts::auth::Auth>().sign_in(&username, &password, session::client_ip()).await?;
        Ok::<_, AppError>(state.get::<crate::accounts::auth::Auth>().start_session(&user).await?)
    }
    .await;
    start_session(result, "/signin")
}

/// Set the cookie of a new session, or report why there is none (a plain form goes back to
/// `form` with the error).
#[cfg(feature = "ssr")]
fn start_session(result: Result<String, AppError>, form: &str) -> Result<(), AppError> {
    use crate::server::session;
    match result {
        Ok(secret) => {
            session::set_session_cookie(Some(&secret));
            session::redirect_form("/", None);
            Ok(())
        }
        Err(error) => {
            session::redirect_form(form, Some(&error.to_string()));
            Err(error)
        }
    }
}

#[server(endpoint = "sign_out", output = crate::codec::Json)]
pub async fn sign_out() -> Result<(), AppError> {
    use crate::server::session;
    let state = session::state()?;
    if let Some(secret) = session::session_secret() {
        state.get::<crate::accounts::auth::Auth>().end_session(&secret).await?;
    }
    session::set_session_cookie(None);
    session::redirect_form("/signin", None);
    Ok(())
}

/// After a successful sign-in, -up or -out with JavaScript: reload so that the page and its
/// live connection start over as the new identity.
fn reload_on_success(
    value: impl Get<Value = Option<Result<(), AppError>>> + Send + Sync + 'static,
    path: &'static str,
) {
    Effect::new(move |_| {
        if let Some(Ok(())) = value.get() {
            #[cfg(feature = "hydrate")]
            {
                let _ = window().location().set_href(path);
            }
            let _ = path;
        }
    });
}

/// The error to show: the action's, or the one a no-JavaScript redirect put in the query.
fn form_error(
    value: impl Get<Value = Option<Result<(), AppError>>> + Copy + Send + Sync + 'static,
) -> impl Fn() -> Option<String> + Copy {
    let query = use_query_map();
    move || match value.get() {
        Some(Err(error)) => Some(error.to_string()),
        Some(Ok(())) => None,
        None => query.read().get("error"),
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    let error = form_error(action.value());
    reload_on_success(action.value(), "/");
    view! {
        <section class="auth-page">
            <h1>"Sign in"</h1>
            <ActionForm action=action attr:class="auth-form">
                <label>"Username" <input name="username" required autocomplete="username" maxlength="32"/></label>
                <label>"Password" <input type="password" name="password" required autocomplete="current-password"/></label>
                {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <button type="submit">"Sign in"</button>
            </ActionForm>
            <p>"No account yet? " <a href="/signup">"Sign up"</a></p>
        </section>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    let error = form_error(action.value());
    reload_on_success(action.value(), "/");
    view! {
        <section class="auth-page">
            <h1>"Create an account"</h1>
            <ActionForm action=action attr:class="auth-form">
                <label>"Username"
                    <input name="username" required autocomplete="username" minlength="3" maxlength="32"
                        pattern="[A-Za-z0-9._\\-]+" title="letters, digits, '.', '_' and '-'"/>
                </label>
                <label>"Password"
                    <input type="password" name="password" required autocomplete="new-password"/>
                    <small>"At least 8 characters."</small>
                </label>
                {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <button type="submit">"Sign up"</button>
            </ActionForm>
            <p>"Have an account? " <a href="/signin">"Sign in"</a></p>
        </section>
    }
}

#[component]
pub fn SignOutButton() -> impl IntoView {
    let action = ServerAction::<SignOut>::new();
    reload_on_success(action.value(), "/signin");
    view! {
        <ActionForm action=action attr:class="signout">
            <button type="submit" class="link">"Sign out"</button>
        </ActionForm>
    }
}
