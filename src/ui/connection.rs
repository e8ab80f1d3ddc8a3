//! The state of the tab's live connection, and the badge that shows it.

use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Before the first connection (and on the server, which renders this).
    Connecting,
    Connected,
    /// Lost; trying again with backoff.
    Reconnecting,
    /// The browser says it has no network; waiting for it to return.
    Offline,
}

impl ConnState {
    pub fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting…",
            ConnState::Connected => "connected",
            ConnState::Reconnecting => "reconnecting…",
            ConnState::Offline => "offline",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            ConnState::Connecting => "conn conn-connecting",
            ConnState::Connected => "conn conn-connected",
            ConnState::Reconnecting => "conn conn-reconnecting",
            ConnState::Offline => "conn conn-offline",
        }
    }
}

#[component]
pub fn ConnectionBadge(state: RwSignal<ConnState>) -> impl IntoView {
    view! {
        <span class=move || state.get().class() data-testid="connection" role="status" aria-live="polite">
            {move || state.get().label()}
        </span>
    }
}
