//! Documents in the page: a room's list (beside its chat), and a document's own page, a
//! lazily loaded module of its own so that the CRDT's code costs nothing elsewhere.
//!
//! The server renders the document's text and its preview, readable without JavaScript. Once
//! hydrated, the page keeps a copy of the document (yrs, as the server does) and edits it
//! locally at once: each change is sent as an update, and the others' updates are merged in.
//! Offline, editing goes on; on reconnecting the copy and the server exchange what each lacks.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde::{Deserialize, Serialize};

use super::protocol::{doc_topic, docs_topic, DocListFrame, DocRequest, DocumentInfo, Version};
use crate::error::AppError;
use crate::realtime::client::{self, Notice};
use crate::ui::time::utc_minute;

/// What the document's page starts from: the document and its text as the server has them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DocView {
    pub document: DocumentInfo,
    pub text: String,
    /// The text's preview (see `markdown`), rendered by the server.
    pub html: String,
    pub may_manage: bool,
}

#[server(endpoint = "load_document", output = crate::codec::Json)]
pub async fn load_document(id: i64) -> Result<DocView, AppError> {
    use super::server::Documents;
    use crate::server::session;
    let who = session::require_identity().await?;
    let documents = session::service::<Documents>()?;
    let (document, room) = documents.visible(id, &who).await?;
    let text = documents.open(id).await?.text();
    Ok(DocView {
        html: super::markdown::to_html(&text),
        may_manage: Documents::may_manage(&document, &who),
        document: Documents::info(&document, &room),
        text,
    })
}

#[server(endpoint = "list_documents", output = crate::codec::Json)]
pub async fn list_documents(room: String) -> Result<Vec<DocumentInfo>, AppError> {
    use super::server::Documents;
    use crate::server::session;
    let who = session::require_identity().await?;
    Ok(session::service::<Documents>()?.list(&room, &who).await?)
}

crate::app::lazy_page!(DocRoute, DocPage);

/// A room's documents, beside its chat: links, live, and a form that makes one (a plain form
/// without JavaScript: `POST /rooms/<room>/docs`). `initial`: the list as the page loaded it
/// ([`list_documents`], read by the room's page with its other resources).
#[component]
pub fn DocList(room: String, initial: Vec<DocumentInfo>) -> impl IntoView {
    let topic = docs_topic(&room);
    // The list as loaded, then as the subscription sends it.
    let documents = RwSignal::new(initial);
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    {
        let topic = topic.clone();
        let navigate = navigate.clone();
        Effect::new(move |_| {
            let navigate = navigate.clone();
            let handle = client::subscribe(&topic, None, false, move |frame| match frame {
                Notice::Event(DocListFrame::Documents { documents: list, .. }) => documents.set(list.clone()),
                Notice::Event(DocListFrame::DocumentCreated { document, .. }) => {
                    navigate(&format!("/docs/{}", document.id), Default::default());
                }
                _ => {}
            });
            let topic = topic.clone();
            on_cleanup(move || client::unsubscribe(&topic, handle));
        });
    }
    let name_input = NodeRef::<leptos::html::Input>::new();
    let create = {
        let room = room.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let name = name_input.get_untracked().map(|input| input.value()).unwrap_or_default();
            match super::protocol::clean_name(&name) {
                Some(name) => {
                    error.set(None);
                    let topic = format!("chat:{room}");
                    let request = DocRequest::CreateDocument { id: client::request_id(), topic, name };
                    if !client::send(&request) {
                        error.set(Some("Not connected; try again in a moment.".into()));
                    }
                }
                None => error.set(Some("A name is 1 to 100 characters, without “/”.".into())),
            }
        }
    };
    view! {
        <details class="doc-list" data-testid="doc-list">
            <summary>"Documents"</summary>
            <ul>
                {move || documents.get().into_iter().map(|doc| view! {
                    <li><a href=format!("/docs/{}", doc.id) data-doc=doc.id.to_string()>{doc.name.clone()}</a></li>
                }).collect_view()}
            </ul>
            <form class="new-doc" method="post" action=format!("/rooms/{room}/docs") on:submit=create>
                <input name="name" node_ref=name_input required maxlength="100" placeholder="New document"
                    aria-label="New document name"/>
                <button type="submit">"Add"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </details>
    }
}

/// How the page's copy stands against the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Not yet synced: the text shown is the server's render, read-only.
    Loading,
    Saved,
    /// Edits sent and not yet acknowledged.
    Saving,
    /// No connection: edits are kept and merge once it is back.
    Offline,
}

/// Someone else in the document, from their awareness.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub client: u64,
    pub name: String,
    pub color: String,
    /// Their selection in my copy's text, in UTF-16 units (anchor, head), if known.
    pub selection: Option<(u32, u32)>,
}

/// What the editor shares with the view.
#[derive(Clone, Copy)]
pub struct EditorSignals {
    pub text: RwSignal<String>,
    pub state: RwSignal<SyncState>,
    pub peers: RwSignal<Vec<Peer>>,
    pub name: RwSignal<String>,
    pub deleted: RwSignal<bool>,
    pub message: RwSignal<Option<String>>,
    pub versions: RwSignal<Option<Vec<Version>>>,
    pub version: RwSignal<Option<(u64, String)>>,
    pub may_manage: RwSignal<bool>,
    /// The tab's connection.
    pub conn: RwSignal<crate::ui::connection::ConnState>,
}

/// A document's page: `/docs/<id>`.
#[component]
pub fn DocPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0));
    let view = Resource::new(move || id.get(), load_document);
    view! {
        <section class="doc-page">
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view.await {
                        Ok(found) => view! { <DocEditor initial=found/> }.into_any(),
                        Err(AppError::Unauthorized) => view! {
                            <p>"Sign in to see this document." " " <a class="button" href="/signin">"Sign in"</a></p>
                        }.into_any(),
                        Err(error) => view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// A colour for a client, the same in every page.
pub fn color_of(client: u64) -> &'static str {
    const COLORS: [&str; 8] = ["#d9480f", "#2f9e44", "#1971c2", "#9c36b5", "#e8590c", "#0c8599", "#c2255c", "#5f3dc4"];
    COLORS[(client.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize]
}

/// A piece of the overlay that draws the others' carets over the text.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Selected(String, String),
    Caret(String, String),
}

/// The overlay's pieces: the text cut at every caret and selection (UTF-16 offsets).
fn pieces(text: &str, peers: &[Peer]) -> Vec<Piece> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let len = units.len() as u32;
    let mut marks: Vec<(u32, u32, &Peer)> = peers
        .iter()
        .filter_map(|peer| {
            let (a, b) = peer.selection?;
            Some((a.min(b).min(len), a.max(b).min(len), peer))
        })
        .collect();
    marks.sort_by_key(|(start, _, _)| *start);
    let mut out = Vec::new();
    let mut at = 0u32;
    let slice = |from: u32, to: u32| String::from_utf16_lossy(&units[from as usize..to as usize]);
    for (start, end, peer) in marks {
        let start = start.max(at);
        let end = end.max(start);
        if start > at {
            out.push(Piece::Text(slice(at, start)));
        }
        if end > start {
            out.push(Piece::Selected(slice(start, end), peer.color.clone()));
        }
        out.push(Piece::Caret(peer.name.clone(), peer.color.clone()));
        at = end;
    }
    if at < len {
        out.push(Piece::Text(slice(at, len)));
    }
    // A last line break is drawn as the textarea draws it.
    out.push(Piece::Text("\u{200b}".into()));
    out
}

#[component]
fn DocEditor(initial: DocView) -> impl IntoView {
    let id = initial.document.id;
    let topic = doc_topic(id);
    let room = initial.document.room.clone();
    let signals = EditorSignals {
        text: RwSignal::new(initial.text.clone()),
        state: RwSignal::new(SyncState::Loading),
        peers: RwSignal::new(Vec::new()),
        name: RwSignal::new(initial.document.name.clone()),
        deleted: RwSignal::new(false),
        message: RwSignal::new(None),
        versions: RwSignal::new(None),
        version: RwSignal::new(None),
        may_manage: RwSignal::new(initial.may_manage),
        conn: expect_context::<crate::app::Session>().conn,
    };
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let editor = handle::Handle::new();
    {
        let topic = topic.clone();
        Effect::new(move |_| {
            if let (Some(element), Some(number)) = (textarea.get(), editor.reserve()) {
                leptos::task::spawn_local(start_editor(number, topic.clone(), element, signals));
            }
        });
        Effect::new(move |_| {
            let _ = signals.conn.get();
            editor.refresh();
        });
        on_cleanup(move || editor.stop());
    }
    let html = RwSignal::new(initial.html.clone());
    // The preview follows the text, at most every 150 ms.
    {
        let pending = StoredValue::new(false);
        Effect::new(move |first: Option<()>| {
            signals.text.track();
            if first.is_none() || pending.get_value() {
                return;
            }
            pending.set_value(true);
            set_timeout(
                move || {
                    pending.set_value(false);
                    let text = signals.text.get_untracked();
                    html.set(super::markdown::to_html(&text));
                },
                std::time::Duration::from_millis(150),
            );
        });
    }
    let preview_on_phone = RwSignal::new(false);
    let history_open = RwSignal::new(false);
    let renaming = RwSignal::new(false);
    let navigate = use_navigate();
    {
        let room = room.clone();
        Effect::new(move |_| {
            if signals.deleted.get() {
                navigate(&format!("/rooms/{room}"), Default::default());
            }
        });
    }
    let send = {
        let topic = topic.clone();
        move |make: &dyn Fn(String, String) -> DocRequest| {
            let id = client::random_id();
            client::send_durable(&topic, &id, &make(id.clone(), topic.clone()));
        }
    };
    let open_history = {
        let topic = topic.clone();
        move |_| {
            let open = !history_open.get_untracked();
            history_open.set(open);
            if open {
                signals.versions.set(None);
                signals.version.set(None);
                client::send(&DocRequest::DocVersions { id: client::request_id(), topic: topic.clone() });
            }
        }
    };
    let show_version = {
        let topic = topic.clone();
        move |offset: u64| {
            client::send(&DocRequest::DocVersion { id: client::request_id(), topic: topic.clone(), offset });
        }
    };
    let restore = {
        let send = send.clone();
        move |_| {
            if let Some((offset, _)) = signals.version.get_untracked() {
                send(&|id, topic| DocRequest::RestoreVersion { id, topic, offset });
                history_open.set(false);
            }
        }
    };
    let rename_input = NodeRef::<leptos::html::Input>::new();
    let rename = {
        let send = send.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let name = rename_input.get_untracked().map(|input| input.value()).unwrap_or_default();
            renaming.set(false);
            send(&|id, topic| DocRequest::RenameDocument { id, topic, name: name.clone() });
        }
    };
    let delete = {
        let send = send.clone();
        move |_| {
            if handle::confirm("Delete this document and its history for everyone?") {
                send(&|id, topic| DocRequest::DeleteDocument { id, topic });
            }
        }
    };
    let mirror = NodeRef::<leptos::html::Div>::new();
    let status = move || match signals.state.get() {
        SyncState::Loading => "Connecting…",
        SyncState::Saved => "Saved",
        SyncState::Saving => "Saving…",
        SyncState::Offline => "Offline: your edits are kept and merge when you are back",
    };
    let hydrated = expect_context::<crate::app::Session>().hydrated;
    view! {
        <div class="doc" data-doc=id.to_string() class:preview-on-phone=move || preview_on_phone.get()>
            <header class="doc-head">
                <a class="back" href=format!("/rooms/{room}")>"← #" {room.clone()}</a>
                <Show when=move || !renaming.get() fallback=move || view! {
                    <form class="rename" on:submit=rename.clone()>
                        <input name="name" node_ref=rename_input required maxlength="100" aria-label="Document name"
                            value=signals.name.get_untracked()/>
                        <button type="submit">"Save"</button>
                        <button type="button" class="secondary" on:click=move |_| renaming.set(false)>"Cancel"</button>
                    </form>
                }>
                    <h1 class="doc-title" data-testid="doc-title">{move || signals.name.get()}</h1>
                </Show>
                <p class="doc-people" data-testid="doc-people" aria-label="In this document">
                    {move || signals.peers.get().into_iter().map(|peer| view! {
                        <span class="person" style=format!("--c: {}", peer.color)>{peer.name}</span>
                    }).collect_view()}
                </p>
                <p class="doc-status" data-testid="doc-status" aria-live="polite"
                    data-state=move || format!("{:?}", signals.state.get()).to_lowercase()>{status}</p>
            </header>
            <div class="doc-tools" role="toolbar" aria-label="Document">
                <button type="button" class="secondary" title="Undo my last edit (Ctrl+Z)" disabled=move || !hydrated.get()
                    on:click=move |_| editor.undo()>"Undo"</button>
                <button type="button" class="secondary" title="Redo (Ctrl+Shift+Z)" disabled=move || !hydrated.get()
                    on:click=move |_| editor.redo()>"Redo"</button>
                <button type="button" class="secondary" aria-expanded=move || history_open.get().to_string()
                    disabled=move || !hydrated.get() on:click=open_history>"History"</button>
                <a class="button secondary" href=format!("/docs/{id}/export.md") download="">"Export .md"</a>
                <button type="button" class="secondary phone-only" aria-pressed=move || preview_on_phone.get().to_string()
                    on:click=move |_| preview_on_phone.update(|p| *p = !*p)>
                    {move || if preview_on_phone.get() { "Edit" } else { "Preview" }}
                </button>
                <Show when=move || signals.may_manage.get() && hydrated.get()>
                    <button type="button" class="secondary" on:click=move |_| renaming.set(true)>"Rename"</button>
                    <button type="button" class="secondary danger" on:click=delete.clone()>"Delete"</button>
                </Show>
            </div>
            {move || signals.message.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
            <Show when=move || history_open.get()>
                <aside class="doc-history" data-testid="doc-history">
                    <h2>"History"</h2>
                    {
                        let show_version = show_version.clone();
                        move || match signals.versions.get() {
                            None => view! { <p class="loading">"Loading…"</p> }.into_any(),
                            Some(versions) if versions.is_empty() => view! { <p>"No edits yet."</p> }.into_any(),
                            Some(versions) => {
                                let show_version = show_version.clone();
                                view! {
                                    <ol class="versions">
                                        {versions.into_iter().map(|version| {
                                            let show_version = show_version.clone();
                                            let offset = version.offset;
                                            let chosen = move || signals.version.with(|v| v.as_ref().is_some_and(|(o, _)| *o == offset));
                                            view! {
                                                <li class:chosen=chosen>
                                                    <button type="button" class="link" data-offset=offset.to_string()
                                                        on:click=move |_| show_version(offset)>
                                                        {utc_minute(version.at)} " UTC · " {version.authors.join(", ")}
                                                        " · " {version.edits} {if version.edits == 1 { " edit" } else { " edits" }}
                                                    </button>
                                                </li>
                                            }
                                        }).collect_view()}
                                    </ol>
                                }.into_any()
                            }
                        }
                    }
                    {
                        let restore = restore.clone();
                        move || {
                            let restore = restore.clone();
                            signals.version.get().map(|(_, text)| view! {
                                <button type="button" on:click=restore>"Restore this version"</button>
                                <pre class="version-text" data-testid="version-text">{text}</pre>
                            })
                        }
                    }
                </aside>
            </Show>
            <div class="doc-body">
                <div class="doc-editor">
                    <textarea class="doc-text" data-testid="doc-text" node_ref=textarea spellcheck="false"
                        aria-label="Document text"
                        readonly=move || signals.state.get() == SyncState::Loading
                        on:input=move |_| editor.input()
                        on:select=move |_| editor.selection()
                        on:keyup=move |_| editor.selection()
                        on:mouseup=move |_| editor.selection()
                        on:keydown=move |ev| editor.keydown(&ev)
                        on:scroll=move |_| editor.scrolled(mirror)
                        prop:value=move || signals.text.get_untracked()
                    >{initial.text.clone()}</textarea>
                    <div class="doc-mirror" node_ref=mirror aria-hidden="true">
                        {move || {
                            let peers = signals.peers.get();
                            if peers.iter().all(|p| p.selection.is_none()) {
                                return Vec::new();
                            }
                            signals.text.with(|text| pieces(text, &peers)).into_iter().map(|piece| match piece {
                                Piece::Text(text) => view! { <span>{text}</span> }.into_any(),
                                Piece::Selected(text, color) => view! {
                                    <mark style=format!("--c: {color}")>{text}</mark>
                                }.into_any(),
                                Piece::Caret(name, color) => view! {
                                    <span class="caret" style=format!("--c: {color}") data-testid="remote-caret">
                                        <span class="caret-name">{name}</span>
                                    </span>
                                }.into_any(),
                            }).collect::<Vec<_>>()
                        }}
                    </div>
                </div>
                <div class="doc-preview markdown" data-testid="doc-preview" inner_html=move || html.get()></div>
            </div>
            <p class="doc-yjs">
                "Yjs editors connect to this document as room "
                <code>{format!("{}/{}", initial.document.room, initial.document.name)}</code>
                " at " <code>"/yjs"</code> "."
            </p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, selection: (u32, u32)) -> Peer {
        Peer { client: 1, name: name.into(), color: "#000".into(), selection: Some(selection) }
    }

    #[test]
    fn the_overlay_cuts_the_text_at_carets_and_selections() {
        let cut = pieces("héllo 😀 world", &[peer("ann", (9, 6)), peer("bob", (0, 0))]);
        assert_eq!(
            cut,
            vec![
                Piece::Caret("bob".into(), "#000".into()),
                Piece::Text("héllo ".into()),
                Piece::Selected("😀 ".into(), "#000".into()),
                Piece::Caret("ann".into(), "#000".into()),
                Piece::Text("world".into()),
                Piece::Text("\u{200b}".into()),
            ]
        );
        // A caret past the end (a stale one) is drawn at the end.
        assert_eq!(pieces("ab", &[peer("c", (7, 7))])[1], Piece::Caret("c".into(), "#000".into()));
    }
}

#[cfg(not(feature = "hydrate"))]
mod handle {
    //! On the server: nothing live happens.
    use leptos::prelude::NodeRef;

    #[derive(Clone, Copy)]
    pub struct Handle;

    impl Handle {
        pub fn new() -> Handle {
            Handle
        }
        pub fn reserve(&self) -> Option<u64> {
            None
        }
        pub fn stop(&self) {}
        pub fn refresh(&self) {}
        pub fn undo(&self) {}
        pub fn redo(&self) {}
        pub fn input(&self) {}
        pub fn selection(&self) {}
        pub fn keydown(&self, _event: &leptos::ev::KeyboardEvent) {}
        pub fn scrolled(&self, _mirror: NodeRef<leptos::html::Div>) {}
    }

    pub fn confirm(_question: &str) -> bool {
        false
    }
}

#[cfg(feature = "hydrate")]
mod handle;
#[cfg(feature = "hydrate")]
mod live;

/// Start the editor: its module (the editor and yrs) is fetched now, after the page's own.
#[lazy]
async fn start_editor(
    handle: u64,
    topic: String,
    textarea: leptos::web_sys::HtmlTextAreaElement,
    signals: EditorSignals,
) {
    #[cfg(feature = "hydrate")]
    live::start(handle, topic, textarea, signals);
    #[cfg(not(feature = "hydrate"))]
    let _ = (handle, topic, textarea, signals);
}
