//! The HTML shell, the router, and what every page shares: the live connection's
//! state and the visitor's display name.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, SsrMode};

use crate::client;
use crate::components::connection::{ConnState, ConnectionBadge};
use crate::pages::chat::ChatPage;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
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
    /// The display name, once chosen (kept in the browser's local storage).
    pub name: RwSignal<Option<String>>,
    /// True once the page runs in the browser; false during the server render and hydration.
    pub hydrated: ReadSignal<bool>,
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let (hydrated, set_hydrated) = signal(false);
    let session = Session { conn: RwSignal::new(ConnState::Connecting), name: RwSignal::new(None), hydrated };
    provide_context(session);

    // Effects run only in the browser, after hydration.
    Effect::new(move |_| {
        set_hydrated.set(true);
        let name = client::stored_name();
        session.name.set(name.clone());
        client::start(name, session.conn);
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/switchboard.css"/>
        <Title text="Switchboard"/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Switchboard"</a>
                <ConnectionBadge state=session.conn/>
                <NameBox/>
            </header>
            <main>
                <Routes fallback=|| view! { <p class="notfound">"Page not found."</p> }>
                    // Async: the whole page, history included, is in the first HTML response,
                    // so it reads without JavaScript.
                    <Route path=path!("/") view=ChatPage ssr=SsrMode::Async/>
                    <Route path=path!("/rooms/:room") view=ChatPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// Shows the display name, or a form to choose one.
#[component]
fn NameBox() -> impl IntoView {
    let session = expect_context::<Session>();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let editing = RwSignal::new(false);
    let save = move || {
        let Some(name) = crate::protocol::clean_display_name(&draft.get_untracked()) else {
            error.set(Some("A name is 1 to 32 characters."));
            return;
        };
        error.set(None);
        editing.set(false);
        client::store_name(&name);
        client::start(Some(name.clone()), session.conn);
        session.name.set(Some(name));
    };
    view! {
        <div class="namebox">
            <Show
                when=move || session.name.get().is_some() && !editing.get()
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
                <span class="me">"You are " <strong data-testid="my-name">{move || session.name.get().unwrap_or_default()}</strong></span>
                <button class="link" on:click=move |_| { draft.set(session.name.get_untracked().unwrap_or_default()); editing.set(true); }>"change"</button>
            </Show>
        </div>
    }
}
