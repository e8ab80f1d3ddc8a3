//! The HTML shell, the router, and what every page shares: who I am, the live
//! connection's state, and unread counts.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, Lazy, SsrMode};

use crate::accounts::page::{current_user, Me, SignInPage, SignOutButton, SignUpPage};
use crate::error::AppError;
use crate::realtime::client;
use crate::ui::browser;
use crate::ui::connection::{ConnState, ConnectionBadge};

/// A page whose code the browser fetches when the page is first opened, not with the rest
/// of the app: each is a WASM module of its own (`make` splits the bundle at these). On a
/// page's first load the server's HTML links its module for preloading, and hydration
/// waits for it. Each feature declares its pages' routes beside them
/// (`lazy_page!(ChatRoute, ChatPage);` in `chat/page.rs`), and the router below names only the
/// route, so that nothing in the main module keeps a page's code there.
macro_rules! lazy_page {
    ($route:ident, $page:path) => {
        pub struct $route;

        #[::leptos_router::lazy_route]
        impl ::leptos_router::LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(this: Self) -> ::leptos::prelude::AnyView {
                use ::leptos::prelude::IntoAny as _;
                // Taken apart (a unit struct): `#[lazy]` does not accept `_` as a parameter.
                let $route = this;
                $page().into_any()
            }
        }
    };
}
pub(crate) use lazy_page;

use crate::accounts::settings::SettingsRoute;
use crate::chat::page::ChatRoute;
use crate::documents::page::DocRoute;
use crate::map::page::{MapBenchRoute, MapRoute};
use crate::polls::page::PollRoute;
use crate::sensors::page::{ChartBenchRoute, SensorsRoute};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1, interactive-widget=resizes-content"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// What every page can read: set once by the app.
#[derive(Clone, Copy)]
pub struct Session {
    pub conn: RwSignal<ConnState>,
    /// Who I am, from the server.
    pub me: Resource<Result<Me, AppError>>,
    /// A guest's chosen display name (guest mode only; kept in local storage).
    pub guest_name: RwSignal<Option<String>>,
    /// True once the page runs in the browser; false during the server render and hydration.
    pub hydrated: ReadSignal<bool>,
    /// Unread messages per room.
    pub unread: RwSignal<HashMap<String, u64>>,
    /// The room on screen, if any.
    pub current_room: RwSignal<Option<String>>,
}

impl Session {
    /// Whether I can post: signed in, or a guest who chose a name.
    pub fn can_post(&self) -> bool {
        match self.me.get() {
            Some(Ok(me)) if me.user.is_some() => true,
            Some(Ok(me)) => me.guest_access && self.guest_name.get().is_some(),
            _ => false,
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let (hydrated, set_hydrated) = signal(false);
    let session = Session {
        conn: RwSignal::new(ConnState::Connecting),
        me: Resource::new(|| (), |_| current_user()),
        guest_name: RwSignal::new(None),
        hydrated,
        unread: RwSignal::new(HashMap::new()),
        current_room: RwSignal::new(None),
    };
    provide_context(session);

    // Set in the browser once the whole page has hydrated, the lazily loaded page included.
    client::on_hydrated(move || set_hydrated.set(true));
    Effect::new(move |_| match session.me.get() {
        Some(Ok(me)) if me.user.is_some() => client::start(None, session.conn),
        Some(Ok(me)) if me.guest_access => {
            let name = browser::stored_name();
            session.guest_name.set(name.clone());
            client::start(name, session.conn);
        }
        _ => {}
    });

    let title = move || {
        let total: u64 = session.unread.with(|u| u.values().sum());
        if total > 0 {
            format!("({total}) Switchboard")
        } else {
            "Switchboard".to_owned()
        }
    };

    view! {
        <Stylesheet id="leptos" href="/pkg/switchboard.css"/>
        <Title text=title/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Switchboard"</a>
                <nav class="sections" aria-label="Sections">
                    <a href="/">"Chat"</a>
                    <a href="/sensors">"Sensors"</a>
                </nav>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let me = session.me.await.unwrap_or_default();
                        let live = me.user.is_some() || me.guest_access;
                        view! {
                            <Show when=move || live>
                                <ConnectionBadge state=session.conn/>
                                <NotificationButton/>
                            </Show>
                            <Account me=me.clone()/>
                        }
                    })}
                </Transition>
            </header>
            <main>
                <Routes fallback=|| view! { <p class="notfound">"Page not found."</p> }>
                    // Async: the whole page, history included, is in the first HTML response,
                    // so it reads without JavaScript.
                    <Route path=path!("/") view={Lazy::<ChatRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/rooms/:room") view={Lazy::<ChatRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/rooms/:room/map") view={Lazy::<MapRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/bench/map") view={Lazy::<MapBenchRoute>::new()}/>
                    <Route path=path!("/polls/:id") view={Lazy::<PollRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/docs/:id") view={Lazy::<DocRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/sensors") view={Lazy::<SensorsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/bench/chart") view={Lazy::<ChartBenchRoute>::new()}/>
                    <Route path=path!("/signin") view=SignInPage ssr=SsrMode::Async/>
                    <Route path=path!("/signup") view=SignUpPage ssr=SsrMode::Async/>
                    <Route path=path!("/settings") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The right end of the top bar: who I am, or how to become someone.
#[component]
fn Account(me: Me) -> impl IntoView {
    match me.user {
        Some(name) => view! {
            <div class="account">
                <span class="me">
                    <strong data-testid="my-name">{name}</strong>
                    {me.admin.then(|| view! { <span class="badge">"admin"</span> })}
                </span>
                <a href="/settings">"Settings"</a>
                <SignOutButton/>
            </div>
        }
        .into_any(),
        None if me.guest_access => view! {
            <div class="account">
                <GuestName/>
                <a href="/signin">"Sign in"</a>
            </div>
        }
        .into_any(),
        None => view! {
            <div class="account">
                <a href="/signin">"Sign in"</a>
                <a href="/signup">"Sign up"</a>
            </div>
        }
        .into_any(),
    }
}

/// Asks for permission to notify, on a click and never on page load.
#[component]
fn NotificationButton() -> impl IntoView {
    let session = expect_context::<Session>();
    let permission = RwSignal::new("unknown".to_owned());
    Effect::new(move |_| {
        if session.hydrated.get() {
            permission.set(browser::notification_permission());
        }
    });
    view! {
        <Show when=move || permission.get() == "default">
            <button class="link" data-testid="enable-notifications" on:click=move |_| {
                browser::request_notifications(move |answer| permission.set(answer));
            }>"Enable notifications"</button>
        </Show>
    }
}

/// A guest's display name, or a form to choose one.
#[component]
fn GuestName() -> impl IntoView {
    let session = expect_context::<Session>();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let editing = RwSignal::new(false);
    let save = move || {
        let Some(name) = crate::realtime::protocol::clean_display_name(&draft.get_untracked()) else {
            error.set(Some("A name is 1 to 32 characters."));
            return;
        };
        error.set(None);
        editing.set(false);
        browser::store_name(&name);
        client::start(Some(name.clone()), session.conn);
        session.guest_name.set(Some(name));
    };
    view! {
        <div class="namebox">
            <Show
                when=move || session.guest_name.get().is_some() && !editing.get()
                fallback=move || view! {
                    <form class="name-form" on:submit=move |ev| { ev.prevent_default(); save(); }>
                        <label for="display-name">"Your name"</label>
                        <input id="display-name" name="name" maxlength="32" autocomplete="nickname"
                            placeholder="Choose a display name"
                            prop:value=move || draft.get()
                            on:input=move |ev| draft.set(event_target_value(&ev))/>
                        <button type="submit" disabled=move || !session.hydrated.get()>"Join"</button>
                        {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
                    </form>
                }
            >
                <span class="me">"Guest " <strong data-testid="guest-name">{move || session.guest_name.get().unwrap_or_default()}</strong></span>
                <button class="link" on:click=move |_| {
                    draft.set(session.guest_name.get_untracked().unwrap_or_default());
                    editing.set(true);
                }>"change"</button>
            </Show>
        </div>
    }
}
