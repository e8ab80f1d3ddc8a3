//! The chat page: the room list, a room's messages, and the composer.
//!
//! The server renders a room's latest messages into the HTML, readable without
//! JavaScript. Once hydrated, the page subscribes to the room resuming from the
//! last offset it rendered, so the live stream continues exactly where the HTML
//! stopped: no gap, no duplicate.

use leptos::html::Div;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde::{Deserialize, Serialize};

use crate::app::Session;
use crate::client;
use crate::components::time::Timestamp;
use crate::error::AppError;
use crate::protocol::{chat_topic, ChatMessage, RoomInfo, ServerFrame, LOBBY};

/// What the page needs to show a room.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoomPage {
    pub room: RoomInfo,
    /// The latest messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Whether there are older messages.
    pub more: bool,
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::error::AppError;
    use crate::server::AppState;
    use leptos::prelude::*;

    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| AppError::Server("no server state".into()))
    }
}

#[server(endpoint = "load_room")]
pub async fn load_room(room: String) -> Result<RoomPage, AppError> {
    let state = ssr::state()?;
    let (room, messages, more) = state.chat.latest(&room, crate::protocol::HISTORY_PAGE).await?;
    Ok(RoomPage { room: RoomInfo { name: room.name, epoch: room.epoch }, messages, more })
}

#[server(endpoint = "list_rooms")]
pub async fn list_rooms() -> Result<Vec<RoomInfo>, AppError> {
    Ok(ssr::state()?.chat.rooms())
}

#[server(endpoint = "create_room")]
pub async fn create_room(name: String) -> Result<RoomInfo, AppError> {
    let name = name.trim().to_lowercase();
    Ok(ssr::state()?.chat.create_room(&name).await?)
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let room = Memo::new(move |_| params.read().get("room").unwrap_or_else(|| LOBBY.to_owned()));
    let page = Resource::new(move || room.get(), load_room);
    view! {
        <div class="chat-layout">
            <RoomList current=room/>
            <section class="room">
                <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match page.await {
                            Ok(page) => view! { <RoomView page/> }.into_any(),
                            Err(error) => view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </div>
    }
}

/// The rooms, kept current as others create rooms, and a form to create one.
#[component]
fn RoomList(current: Memo<String>) -> impl IntoView {
    let listed = Resource::new(|| (), |_| list_rooms());
    let created = RwSignal::new(Vec::<RoomInfo>::new());
    let create = ServerAction::<CreateRoom>::new();
    let navigate = use_navigate();

    Effect::new(move |_| {
        client::subscribe("rooms", None, move |frame| {
            if let ServerFrame::Room { room, .. } = frame {
                created.update(|rooms| {
                    if !rooms.iter().any(|r| r.name == room.name) {
                        rooms.push(room.clone());
                    }
                });
            }
        });
    });
    Effect::new(move |_| {
        if let Some(Ok(room)) = create.value().get() {
            created.update(|rooms| {
                if !rooms.iter().any(|r| r.name == room.name) {
                    rooms.push(room.clone());
                }
            });
            navigate(&format!("/rooms/{}", room.name), Default::default());
        }
    });

    let rooms = move || {
        let mut rooms = listed.get().and_then(Result::ok).unwrap_or_default();
        for room in created.get() {
            if !rooms.iter().any(|r| r.name == room.name) {
                rooms.push(room);
            }
        }
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    };
    view! {
        <nav class="rooms" aria-label="Rooms">
            <h2>"Rooms"</h2>
            <Transition fallback=|| ()>
                <ul>
                    <For each=rooms key=|room| room.name.clone() let(room)>
                        <li>
                            <a
                                href=format!("/rooms/{}", room.name)
                                class:current={
                                    let name = room.name.clone();
                                    move || current.get() == name
                                }
                            >
                                "# "
                                {room.name.clone()}
                            </a>
                        </li>
                    </For>
                </ul>
            </Transition>
            <ActionForm action=create attr:class="new-room">
                <label for="new-room-name">"New room"</label>
                <input id="new-room-name" name="name" required maxlength="32" pattern="[a-z0-9_\\-]+" placeholder="room-name"/>
                <button type="submit">"Create"</button>
            </ActionForm>
            {move || match create.value().get() {
                Some(Err(error)) => Some(view! { <p class="error" role="alert">{error.to_string()}</p> }),
                _ => None,
            }}
        </nav>
    }
}

/// A publish shown before the server has stored it.
#[derive(Clone, Debug, PartialEq)]
struct Pending {
    id: String,
    text: String,
    error: Option<String>,
}

#[component]
fn RoomView(page: RoomPage) -> impl IntoView {
    let session = expect_context::<Session>();
    let topic = chat_topic(&page.room.name);
    let room_name = page.room.name.clone();
    let placeholder = format!("Message #{room_name} (Enter sends, Shift+Enter for a new line)");
    let messages = RwSignal::new(page.messages);
    let more = RwSignal::new(page.more);
    let pending = RwSignal::new(Vec::<Pending>::new());
    let loading_older = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let list = NodeRef::<Div>::new();

    let near_bottom = move || {
        list.get_untracked().map(|el| el.scroll_height() - el.scroll_top() - el.client_height() < 80).unwrap_or(true)
    };
    let scroll_to_bottom = move || {
        request_animation_frame(move || {
            if let Some(el) = list.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    };

    // Subscribe once in the browser, resuming right after the last rendered message.
    {
        let topic = topic.clone();
        let epoch = page.room.epoch.clone();
        Effect::new(move |_| {
            scroll_to_bottom();
            {
                let offset = messages.with_untracked(|m| m.last().map_or(0, |m| m.offset));
                let resume = crate::protocol::Resume { epoch: epoch.clone(), offset };
                let history_topic = topic.clone();
                client::subscribe(&topic, Some(resume), move |frame| match frame {
                    ServerFrame::Message { message, .. } => {
                        let stick = near_bottom();
                        pending.update(|p| p.retain(|x| x.id != message.id));
                        messages.update(|m| {
                            if m.last().is_none_or(|last| message.offset > last.offset) {
                                m.push(message.clone());
                            }
                        });
                        if stick {
                            scroll_to_bottom();
                        }
                    }
                    ServerFrame::Reset { .. } => {
                        messages.set(Vec::new());
                        client::request_history(&history_topic, None);
                    }
                    ServerFrame::History { messages: older, more: has_more, .. } => {
                        let old_height = list.get_untracked().map_or(0, |el| el.scroll_height());
                        let was_empty = messages.with_untracked(Vec::is_empty);
                        messages.update(|m| {
                            let first = m.first().map_or(u64::MAX, |f| f.offset);
                            let mut merged: Vec<ChatMessage> =
                                older.iter().filter(|o| o.offset < first).cloned().collect();
                            merged.append(m);
                            *m = merged;
                        });
                        more.set(*has_more);
                        loading_older.set(false);
                        request_animation_frame(move || {
                            if let Some(el) = list.get_untracked() {
                                if was_empty {
                                    el.set_scroll_top(el.scroll_height());
                                } else {
                                    el.set_scroll_top(el.scroll_top() + el.scroll_height() - old_height);
                                }
                            }
                        });
                    }
                    ServerFrame::Error { id: Some(id), message, .. } => {
                        pending.update(|p| {
                            if let Some(x) = p.iter_mut().find(|x| &x.id == id) {
                                x.error = Some(message.clone());
                            }
                        });
                    }
                    _ => {}
                });
            }
        });
    }
    {
        let topic = topic.clone();
        on_cleanup(move || {
            client::unsubscribe(&topic);
        });
    }

    let load_older = {
        let topic = topic.clone();
        move || {
            if loading_older.get_untracked() || !more.get_untracked() {
                return;
            }
            let before = messages.with_untracked(|m| m.first().map(|f| f.offset));
            if client::request_history(&topic, before) {
                loading_older.set(true);
            }
        }
    };
    let on_scroll = {
        let load_older = load_older.clone();
        move |_| {
            if list.get_untracked().is_some_and(|el| el.scroll_top() < 40) {
                load_older();
            }
        }
    };

    let send = {
        let topic = topic.clone();
        move || {
            let text = draft.get_untracked();
            if text.trim().is_empty() || session.name.get_untracked().is_none() {
                return;
            }
            draft.set(String::new());
            let id = client::publish(&topic, text.clone());
            pending.update(|p| p.push(Pending { id, text, error: None }));
            scroll_to_bottom();
        }
    };
    let on_keydown = {
        let send = send.clone();
        move |ev: leptos::ev::KeyboardEvent| {
            if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                ev.prevent_default();
                send();
            }
        }
    };

    view! {
        <div class="room-view" data-room=room_name.clone()>
            <h1 class="room-title">"# " {room_name.clone()}</h1>
            <div class="messages" node_ref=list on:scroll=on_scroll data-testid="messages">
                <Show when=move || more.get()>
                    <button class="older" on:click={
                        let load_older = load_older.clone();
                        move |_| load_older()
                    } disabled=move || loading_older.get() || !session.hydrated.get()>
                        {move || if loading_older.get() { "Loading…" } else { "Load older messages" }}
                    </button>
                </Show>
                <Show when=move || messages.with(Vec::is_empty) && pending.with(Vec::is_empty)>
                    <p class="empty">"No messages yet. Say hello!"</p>
                </Show>
                <ol class="message-list">
                    <For each=move || messages.get() key=|m| m.offset let(m)>
                        <li class="msg" data-offset=m.offset.to_string()>
                            <div class="meta">
                                <span class="author">{m.author.clone()}</span>
                                <Timestamp ms=m.ts hydrated=session.hydrated/>
                            </div>
                            <p class="text">{m.text.clone()}</p>
                        </li>
                    </For>
                    <For each=move || pending.get() key=|p| (p.id.clone(), p.error.clone()) let(p)>
                        <li class="msg pending" class:failed=p.error.is_some()>
                            <div class="meta">
                                <span class="author">{move || session.name.get().unwrap_or_default()}</span>
                                <span class="ts">{p.error.clone().unwrap_or_else(|| "sending…".into())}</span>
                            </div>
                            <p class="text">{p.text.clone()}</p>
                        </li>
                    </For>
                </ol>
            </div>
            <form class="composer" on:submit={
                let send = send.clone();
                move |ev| { ev.prevent_default(); send(); }
            }>
                <textarea
                    aria-label="Message"
                    placeholder=move || if session.name.get().is_some() {
                        placeholder.clone()
                    } else {
                        "Choose a display name above to chat".to_owned()
                    }
                    disabled=move || session.name.get().is_none()
                    rows="2"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=on_keydown
                ></textarea>
                <button type="submit" disabled=move || session.name.get().is_none()>"Send"</button>
            </form>
        </div>
    }
}
