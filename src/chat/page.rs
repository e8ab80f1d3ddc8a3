//! The chat page: the room list, a room's messages, and the composer.
//!
//! The server renders a room's latest messages into the HTML, readable without
//! JavaScript. Once hydrated, the page subscribes to the room resuming from the
//! last offset it rendered, so the live stream continues exactly where the HTML
//! stopped: no gap, no duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leptos::html::Div;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde::{Deserialize, Serialize};

use super::client as chat_client;
use super::protocol::{chat_topic, ChatFrame, ChatMessage, RoomInfo, LOBBY};
use crate::app::Session;
use crate::error::AppError;
use crate::polls::page::{new_poll_form, poll_card, PollPlaceholder};
use crate::realtime::client::{self, Notice};
use crate::realtime::protocol::{Resume, ServerFrame};
use crate::ui::browser;
use crate::ui::time::{now_ms, Timestamp};

/// What the page needs to show a room.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoomPage {
    pub room: RoomInfo,
    /// The latest messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Whether there are older messages.
    pub more: bool,
    /// Whether I may remove members (the creator of a private room, or an admin).
    pub can_manage: bool,
}

/// A room in the list, with how many messages I have not read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoomSummary {
    pub room: RoomInfo,
    pub unread: u64,
}

#[server(endpoint = "load_room", output = crate::codec::Json)]
pub async fn load_room(room: String) -> Result<RoomPage, AppError> {
    use super::server::room_info;
    use crate::server::session;
    let who = session::require_identity().await?;
    let state = session::state()?;
    let (room, messages, more) =
        state.get::<crate::chat::server::Chat>().latest(&room, &who, crate::chat::protocol::HISTORY_PAGE).await?;
    let can_manage = room.private && who.user().is_some_and(|u| u.is_admin || room.created_by == Some(u.id));
    Ok(RoomPage { room: room_info(&room), messages, more, can_manage })
}

#[server(endpoint = "list_rooms", output = crate::codec::Json)]
pub async fn list_rooms() -> Result<Vec<RoomSummary>, AppError> {
    use super::server::room_info;
    use crate::server::session;
    let who = session::require_identity().await?;
    let state = session::state()?;
    let reads = match who.user() {
        Some(user) => state.get::<crate::chat::server::Chat>().store().read_state(user.id).await?,
        None => Vec::new(),
    };
    Ok(state
        .get::<crate::chat::server::Chat>()
        .rooms_for(&who)
        .iter()
        .map(|room| {
            let unread =
                reads.iter().find(|(id, _, _)| *id == room.id).map_or(0, |(_, head, read)| head.saturating_sub(*read));
            RoomSummary { room: room_info(room), unread }
        })
        .collect())
}

#[server(endpoint = "create_room", output = crate::codec::Json)]
pub async fn create_room(name: String, private: Option<String>) -> Result<RoomInfo, AppError> {
    use crate::server::session;
    let who = session::require_identity().await?;
    let user = who.user().ok_or(AppError::Unauthorized)?;
    let name = name.trim().to_lowercase();
    let room =
        session::service::<crate::chat::server::Chat>()?.create_room(&name, private.is_some(), Some(user)).await?;
    session::redirect_form(&format!("/rooms/{}", room.name), None);
    Ok(room)
}

#[server(endpoint = "room_members", output = crate::codec::Json)]
pub async fn room_members(room: String) -> Result<Vec<String>, AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    Ok(session::service::<crate::chat::server::Chat>()?.members(&room, &user).await?)
}

#[server(endpoint = "invite_member", output = crate::codec::Json)]
pub async fn invite_member(room: String, username: String) -> Result<(), AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    session::service::<crate::chat::server::Chat>()?.invite(&room, &user, &username).await?;
    session::redirect_form(&format!("/rooms/{room}"), None);
    Ok(())
}

#[server(endpoint = "remove_member", output = crate::codec::Json)]
pub async fn remove_member(room: String, username: String) -> Result<(), AppError> {
    use crate::server::session;
    let user = session::require_user().await?;
    session::service::<crate::chat::server::Chat>()?.remove_member(&room, &user, &username).await?;
    session::redirect_form(&format!("/rooms/{room}"), None);
    Ok(())
}

/// On a phone the room list is a drawer over the room, opened from the room's header.
#[derive(Clone, Copy)]
struct RoomsDrawer(RwSignal<bool>);

crate::app::lazy_page!(ChatRoute, ChatPage);

#[component]
pub fn ChatPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let params = use_params_map();
    let room = Memo::new(move |_| params.read().get("room").unwrap_or_else(|| LOBBY.to_owned()));
    let drawer = RoomsDrawer(RwSignal::new(false));
    provide_context(drawer);
    // Going to a room closes the drawer.
    Effect::new(move |_| {
        room.track();
        drawer.0.set(false);
    });
    let page = Resource::new(move || room.get(), load_room);
    // Created here, not inside the room list, so that server and browser create the
    // resources in the same order and the list hydrates from the same data.
    let listed = Resource::new(|| (), |_| list_rooms());
    // The room's documents, likewise: a resource made inside the room's view, after the
    // awaits above, hydrated from another's data now and then (a page that never went live).
    let documents = Resource::new(move || room.get(), crate::documents::page::list_documents);
    Effect::new(move |_| session.current_room.set(Some(room.get())));
    on_cleanup(move || session.current_room.set(None));
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let summaries = listed.await.unwrap_or_default();
                let documents = documents.await.unwrap_or_default();
                match page.await {
                    Ok(page) => view! {
                        <div class="chat-layout" class:rooms-open=move || drawer.0.get()>
                            <RoomList current=room summaries/>
                            <section class="room"><RoomView page documents/></section>
                        </div>
                    }.into_any(),
                    Err(AppError::Unauthorized) => view! {
                        <section class="welcome">
                            <h1>"Welcome to Switchboard"</h1>
                            <p>"Sign in to chat with your team."</p>
                            <p><a class="button" href="/signin">"Sign in"</a> " " <a class="button" href="/signup">"Create an account"</a></p>
                        </section>
                    }.into_any(),
                    Err(error) => view! {
                        <div class="chat-layout" class:rooms-open=move || drawer.0.get()>
                            <RoomList current=room summaries/>
                            <section class="room"><p class="error" role="alert">{error.to_string()}</p></section>
                        </div>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn add_room(rooms: RwSignal<Vec<RoomInfo>>, room: &RoomInfo) {
    rooms.update(|rooms| {
        if !rooms.iter().any(|r| r.name == room.name) {
            rooms.push(room.clone());
            rooms.sort_by(|a, b| a.name.cmp(&b.name));
        }
    });
}

/// The rooms I can see, kept current, with unread counts; and a form to create one.
#[component]
fn RoomList(current: Memo<String>, summaries: Vec<RoomSummary>) -> impl IntoView {
    let session = expect_context::<Session>();
    let rooms = RwSignal::new(summaries.iter().map(|s| s.room.clone()).collect::<Vec<_>>());
    let create = ServerAction::<CreateRoom>::new();
    let navigate = use_navigate();

    // Unread counts start from the server's, after hydration (the first render shows none
    // on both sides).
    Effect::new(move |_| {
        session.unread.update(|unread| {
            for summary in &summaries {
                unread.entry(summary.room.name.clone()).or_insert(summary.unread);
            }
        });
    });

    {
        let navigate = navigate.clone();
        Effect::new(move |_| {
            client::subscribe("rooms", None, false, move |frame| match frame {
                Notice::Event(ChatFrame::Room { room, .. }) => add_room(rooms, room),
                Notice::Event(ChatFrame::RoomLeft { room, .. }) => {
                    rooms.update(|list| list.retain(|r| &r.name != room));
                    session.unread.update(|u| {
                        u.remove(room);
                    });
                }
                _ => {}
            });
            let navigate = navigate.clone();
            client::subscribe("activity", None, false, move |frame| {
                let Notice::Event(ChatFrame::Activity { room, author, text, .. }) = frame else { return };
                let looking = session.current_room.get_untracked().as_deref() == Some(room) && !browser::page_hidden();
                let mine = *author == client::my_name();
                if !looking && !mine {
                    session.unread.update(|u| *u.entry(room.clone()).or_default() += 1);
                }
                if browser::page_hidden() && !mine && !chat_client::muted_rooms().contains(room) {
                    let path = format!("/rooms/{room}");
                    let navigate = navigate.clone();
                    browser::notify(&format!("#{room}"), &format!("{author}: {text}"), room, move || {
                        navigate(&path, Default::default())
                    });
                }
            });
        });
    }
    Effect::new(move |_| {
        if let Some(Ok(room)) = create.value().get() {
            add_room(rooms, &room);
            navigate(&format!("/rooms/{}", room.name), Default::default());
        }
    });

    let RoomsDrawer(open) = expect_context::<RoomsDrawer>();
    view! {
        <div class="rooms-backdrop" on:click=move |_| open.set(false)></div>
        <nav class="rooms" aria-label="Rooms">
            <div class="rooms-top">
                <h2>"Rooms"</h2>
                <button class="link rooms-close" aria-label="Close the room list"
                    on:click=move |_| open.set(false)>"Close"</button>
            </div>
            <ul>
                <For each=move || rooms.get() key=|room| room.name.clone() let(room)>
                    <li>
                        <a
                            href=format!("/rooms/{}", room.name)
                            class:current={
                                let name = room.name.clone();
                                move || current.get() == name
                            }
                            data-room=room.name.clone()
                        >
                            <span class="room-name">
                                {if room.private { "🔒 " } else { "# " }}
                                {room.name.clone()}
                            </span>
                            {
                                let name = room.name.clone();
                                move || {
                                    let count = session.unread.with(|u| u.get(&name).copied().unwrap_or(0));
                                    (count > 0).then(|| view! { <span class="unread" data-testid="unread">{count}</span> })
                                }
                            }
                        </a>
                    </li>
                </For>
            </ul>
            <Show when=move || session.me.get().and_then(Result::ok).is_some_and(|me| me.user.is_some())>
                <ActionForm action=create attr:class="new-room">
                    <label for="new-room-name">"New room"</label>
                    <input id="new-room-name" name="name" required maxlength="32" pattern="[a-z0-9_\\-]+" placeholder="room-name"/>
                    <label class="check"><input type="checkbox" name="private" value="on"/> "Private (members only)"</label>
                    <button type="submit">"Create"</button>
                </ActionForm>
            </Show>
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

/// Someone typing, and until when to say so.
#[derive(Clone, Debug, PartialEq)]
struct Typist {
    name: String,
    until: f64,
}

#[component]
fn RoomView(page: RoomPage, documents: Vec<crate::documents::protocol::DocumentInfo>) -> impl IntoView {
    let session = expect_context::<Session>();
    let RoomsDrawer(drawer_open) = expect_context::<RoomsDrawer>();
    let topic = chat_topic(&page.room.name);
    let room_name = page.room.name.clone();
    let placeholder = format!("Message #{room_name} (Enter sends, Shift+Enter for a new line)");
    let messages = RwSignal::new(page.messages);
    let more = RwSignal::new(page.more);
    let pending = RwSignal::new(Vec::<Pending>::new());
    let online = RwSignal::new(Vec::<String>::new());
    let typists = RwSignal::new(Vec::<Typist>::new());
    let loading_older = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let muted = RwSignal::new(false);
    let poll_open = RwSignal::new(false);
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
    // What I have seen counts as read, while the tab is visible.
    let mark_read = {
        let topic = topic.clone();
        let room = room_name.clone();
        move || {
            if browser::page_hidden() {
                return;
            }
            if let Some(last) = messages.with_untracked(|m| m.last().map(|m| m.offset)) {
                chat_client::mark_read(&topic, last);
            }
            session.unread.update(|u| {
                u.insert(room.clone(), 0);
            });
        }
    };

    // Subscribe once in the browser, resuming right after the last rendered message.
    let handle = Arc::new(AtomicU64::new(0));
    {
        let handle = handle.clone();
        let topic = topic.clone();
        let epoch = page.room.epoch.clone();
        let room = room_name.clone();
        let mark_read = mark_read.clone();
        Effect::new(move |_| {
            scroll_to_bottom();
            muted.set(chat_client::muted_rooms().contains(&room));
            let offset = messages.with_untracked(|m| m.last().map_or(0, |m| m.offset));
            let resume = Resume { epoch: epoch.clone(), offset };
            let history_topic = topic.clone();
            let mark_read = mark_read.clone();
            browser::on_visible({
                let mark_read = mark_read.clone();
                move || mark_read()
            });
            mark_read();
            let made = client::subscribe(&topic, Some(resume), true, move |frame| match frame {
                Notice::Event(ChatFrame::Message { message, .. }) => {
                    let stick = near_bottom();
                    pending.update(|p| p.retain(|x| x.id != message.id));
                    typists.update(|t| t.retain(|x| x.name != message.author));
                    messages.update(|m| {
                        if m.last().is_none_or(|last| message.offset > last.offset) {
                            m.push(message.clone());
                        }
                    });
                    mark_read();
                    if stick {
                        scroll_to_bottom();
                    }
                }
                Notice::Core(ServerFrame::Presence { online: names, .. }) => online.set(names.clone()),
                Notice::Event(ChatFrame::Typing { user, .. }) if *user != client::my_name() => {
                    let until = now_ms() + 4000.0;
                    typists.update(|t| {
                        t.retain(|x| &x.name != user);
                        t.push(Typist { name: user.clone(), until });
                    });
                    // The room may have been left by then.
                    set_timeout(
                        move || {
                            typists.try_update(|t| t.retain(|x| x.until > now_ms()));
                        },
                        std::time::Duration::from_millis(4100),
                    );
                }
                Notice::Core(ServerFrame::Reset { .. }) => {
                    messages.set(Vec::new());
                    chat_client::request_history(&history_topic, None);
                }
                Notice::Event(ChatFrame::History { messages: older, more: has_more, .. }) => {
                    let old_height = list.get_untracked().map_or(0, |el| el.scroll_height());
                    let was_empty = messages.with_untracked(Vec::is_empty);
                    messages.update(|m| {
                        let first = m.first().map_or(u64::MAX, |f| f.offset);
                        let mut merged: Vec<ChatMessage> = older.iter().filter(|o| o.offset < first).cloned().collect();
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
                Notice::Core(ServerFrame::Error { id: Some(id), message, .. }) => {
                    pending.update(|p| {
                        if let Some(x) = p.iter_mut().find(|x| &x.id == id) {
                            x.error = Some(message.clone());
                        }
                    });
                }
                _ => {}
            });
            handle.store(made, Ordering::Relaxed);
        });
    }
    {
        let topic = topic.clone();
        on_cleanup(move || client::unsubscribe(&topic, handle.load(Ordering::Relaxed)));
    }

    let load_older = {
        let topic = topic.clone();
        move || {
            if loading_older.get_untracked() || !more.get_untracked() {
                return;
            }
            let before = messages.with_untracked(|m| m.first().map(|f| f.offset));
            if chat_client::request_history(&topic, before) {
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
            if text.trim().is_empty() || !session.can_post() {
                return;
            }
            draft.set(String::new());
            let id = chat_client::publish(&topic, text.clone());
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
    let on_input = {
        let topic = topic.clone();
        move |ev| {
            draft.set(event_target_value(&ev));
            chat_client::typing(&topic);
        }
    };
    let toggle_mute = {
        let room = room_name.clone();
        move |_| {
            let mut rooms = chat_client::muted_rooms();
            if rooms.contains(&room) {
                rooms.retain(|r| r != &room);
            } else {
                rooms.push(room.clone());
            }
            muted.set(rooms.contains(&room));
            chat_client::set_muted_rooms(&rooms);
        }
    };
    let typing_line = move || {
        let names: Vec<String> = typists.get().into_iter().map(|t| t.name).collect();
        match names.len() {
            0 => String::new(),
            1 => format!("{} is typing…", names[0]),
            _ => format!("{} are typing…", names.join(", ")),
        }
    };

    view! {
        <div class="room-view" data-room=room_name.clone()>
            <div class="room-head">
                <button class="rooms-toggle" aria-label="Rooms" data-testid="rooms-toggle"
                    on:click=move |_| drawer_open.set(true)>"☰ Rooms"</button>
                <h1 class="room-title">{if page.room.private { "🔒 " } else { "# " }} {room_name.clone()}</h1>
                <p class="online" data-testid="online">
                    <span class="label">"Online: "</span>
                    {move || online.get().join(", ")}
                </p>
                <a class="map-link" href=format!("/rooms/{}/map", room_name)>"Map"</a>
                <button class="link mute" on:click=toggle_mute aria-pressed=move || muted.get().to_string()>
                    {move || if muted.get() { "Unmute" } else { "Mute" }}
                </button>
            </div>
            {page.room.private.then(|| view! { <Members room=room_name.clone() can_manage=page.can_manage/> })}
            <crate::documents::page::DocList room=room_name.clone() initial=documents/>
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
                <MessageList messages pending/>
            </div>
            <p class="typing" data-testid="typing" aria-live="polite">{typing_line}</p>
            <Show when=move || poll_open.get()>
                {
                    let topic = topic.clone();
                    let sent = Callback::new(move |(id, question): (String, String)| {
                        pending.update(|p| p.push(Pending { id, text: format!("Poll: {question}"), error: None }));
                        scroll_to_bottom();
                    });
                    view! {
                        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                            {move || Suspend::new(new_poll_form(topic.clone(), poll_open, sent))}
                        </Suspense>
                    }
                }
            </Show>
            <form class="composer" on:submit={
                let send = send.clone();
                move |ev| { ev.prevent_default(); send(); }
            }>
                <textarea
                    aria-label="Message"
                    placeholder=move || if session.can_post() { placeholder.clone() } else { "Choose a display name above to chat".to_owned() }
                    // Until the page is live, what is typed would be wiped by hydration: the box
                    // takes text once it can send it.
                    disabled=move || !session.can_post() || !session.hydrated.get()
                    rows="2"
                    prop:value=move || draft.get()
                    on:input=on_input
                    on:keydown=on_keydown
                ></textarea>
                <button type="submit" disabled=move || !session.can_post() || !session.hydrated.get()>"Send"</button>
                <button type="button" class="secondary new-poll-toggle" title="Make a poll"
                    disabled=move || !session.can_post() || !session.hydrated.get()
                    aria-expanded=move || poll_open.get().to_string()
                    on:click=move |_| poll_open.update(|open| *open = !*open)>"Poll"</button>
            </form>
        </div>
    }
}

#[component]
fn MessageList(messages: RwSignal<Vec<ChatMessage>>, pending: RwSignal<Vec<Pending>>) -> impl IntoView {
    let session = expect_context::<Session>();
    view! {
        <ol class="message-list">
            <For each=move || messages.get() key=|m| m.offset let(m)>
                <li class="msg" data-offset=m.offset.to_string()>
                    <div class="meta">
                        <span class="author">{m.author.clone()}</span>
                        <Timestamp ms=m.ts hydrated=session.hydrated/>
                    </div>
                    {match m.poll {
                        Some(poll) => {
                            // The server's HTML and hydration show the poll's question and a
                            // link to its page; once the page is live, its card's module is
                            // fetched and the card takes the placeholder's place.
                            let question = StoredValue::new(m.text.clone());
                            let placeholder =
                                move || view! { <PollPlaceholder id=poll question=question.get_value()/> };
                            view! {
                                <Show when=move || session.hydrated.get() fallback=placeholder>
                                    <Suspense fallback=placeholder>
                                        {move || Suspend::new(poll_card(poll, question.get_value()))}
                                    </Suspense>
                                </Show>
                            }.into_any()
                        }
                        None => view! { <p class="text">{m.text.clone()}</p> }.into_any(),
                    }}
                </li>
            </For>
            <For each=move || pending.get() key=|p| (p.id.clone(), p.error.clone()) let(p)>
                <li class="msg pending" class:failed=p.error.is_some()>
                    <div class="meta">
                        <span class="author">{client::my_name()}</span>
                        <span class="ts">{p.error.clone().unwrap_or_else(|| "sending…".into())}</span>
                    </div>
                    <p class="text">{p.text.clone()}</p>
                </li>
            </For>
        </ol>
    }
    .into_any()
}

/// A private room's members: the list, an invite form, and (for its creator or an admin)
/// a way to remove them.
#[component]
fn Members(room: String, can_manage: bool) -> impl IntoView {
    let invite = ServerAction::<InviteMember>::new();
    let remove = ServerAction::<RemoveMember>::new();
    // Loaded in the browser only: the list is not part of the first render.
    let members = {
        let room = room.clone();
        LocalResource::new(move || {
            let _ = (invite.version().get(), remove.version().get());
            room_members(room.clone())
        })
    };
    let invite_room = room.clone();
    let error = move || match (invite.value().get(), remove.value().get()) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    view! {
        <details class="members">
            <summary>"Members"</summary>
            <Transition fallback=|| ()>
                <ul>
                    {
                        let room = room.clone();
                        move || {
                            let room = room.clone();
                            members.get().and_then(Result::ok).unwrap_or_default().into_iter().map(move |name| {
                                let room = room.clone();
                                let member = name.clone();
                                view! {
                                    <li data-member=name.clone()>
                                        {name.clone()}
                                        {can_manage.then(|| view! {
                                            <ActionForm action=remove attr:class="inline">
                                                <input type="hidden" name="room" value=room.clone()/>
                                                <input type="hidden" name="username" value=member.clone()/>
                                                <button type="submit" class="link">"remove"</button>
                                            </ActionForm>
                                        })}
                                    </li>
                                }
                            }).collect_view()
                        }
                    }
                </ul>
            </Transition>
            <ActionForm action=invite attr:class="invite">
                <input type="hidden" name="room" value=invite_room/>
                <input name="username" required placeholder="username" aria-label="Invite by username"/>
                <button type="submit">"Invite"</button>
            </ActionForm>
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </details>
    }
}
