//! Settings: the API tokens that devices and scripts use instead of a password.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::ui::time::Timestamp;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
}

/// A token just made: the secret is shown this once and never again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub token: Token,
    pub secret: String,
}

#[server(endpoint = "list_tokens", output = crate::codec::Json)]
pub async fn list_tokens() -> Result<Vec<Token>, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    let tokens = session::state()?.store.tokens(user.id).await?;
    Ok(tokens
        .into_iter()
        .map(|t| Token { id: t.id, name: t.name, created_at: t.created_at, revoked: t.revoked })
        .collect())
}

#[server(endpoint = "create_token", output = crate::codec::Json)]
pub async fn create_token(name: String) -> Result<NewToken, AppError> {
    use crate::accounts::auth;
    use crate::server::session;
    let user = session::require_user().await?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(AppError::Invalid("a token's name is 1 to 64 characters".into()));
    }
    let secret = format!("sbt_{}", auth::new_secret());
    let info = session::state()?.store.create_token(user.id, &name, &auth::hash_secret(&secret)).await?;
    session::redirect_form("/settings", None);
    Ok(NewToken { token: Token { id: info.id, name: info.name, created_at: info.created_at, revoked: false }, secret })
}

#[server(endpoint = "revoke_token", output = crate::codec::Json)]
pub async fn revoke_token(id: i64) -> Result<(), AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    if !session::state()?.store.revoke_token(user.id, id).await? {
        return Err(AppError::NotFound("no such token".into()));
    }
    session::redirect_form("/settings", None);
    Ok(())
}

crate::app::lazy_page!(SettingsRoute, SettingsPage);

#[component]
pub fn SettingsPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_tokens());
    let hydrated = expect_context::<crate::app::Session>().hydrated;
    view! {
        <section class="settings">
            <h1>"Settings"</h1>
            <h2>"API tokens"</h2>
            <p class="hint">
                "Devices and scripts sign in with a token: send it as "
                <code>"Authorization: Bearer <token>"</code> ", or as " <code>"?token=<token>"</code>
                " on the tutorial's WebSocket endpoints."
            </p>
            <ActionForm action=create attr:class="token-form">
                <label>"Name" <input name="name" required maxlength="64" placeholder="e.g. greenhouse sensor"/></label>
                <button type="submit">"Create token"</button>
            </ActionForm>
            {move || match create.value().get() {
                Some(Ok(new)) => Some(view! {
                    <p class="new-token" role="status">
                        "Copy this token now; it is not shown again: " <code data-testid="new-token">{new.secret}</code>
                    </p>
                }.into_any()),
                Some(Err(error)) => Some(view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any()),
                None => None,
            }}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No tokens yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="tokens">
                                <thead><tr><th>"Name"</th><th>"Created"</th><th>"State"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|t| view! {
                                        <tr data-token=t.name.clone()>
                                            <td>{t.name.clone()}</td>
                                            <td><Timestamp ms=t.created_at hydrated/></td>
                                            <td>{if t.revoked { "revoked" } else { "active" }}</td>
                                            <td>
                                                <Show when=move || !t.revoked>
                                                    <ActionForm action=revoke>
                                                        <input type="hidden" name="id" value=t.id.to_string()/>
                                                        <button type="submit" class="link">"Revoke"</button>
                                                    </ActionForm>
                                                </Show>
                                            </td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(error) => view! { <p class="error">{error.to_string()} " " <a href="/signin">"Sign in"</a></p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
