//! Polls in the page: a poll's card (in its room's timeline, and on its own page), and the
//! form that makes one from the room's composer.
//!
//! The card is a plain form (`POST /polls/<id>/vote`), so that voting works without
//! JavaScript; once hydrated, a click votes over the live connection and the bars follow the
//! poll's tallies. A tally replaces the one shown only if its version is higher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use super::protocol::{
    poll_topic, PollFrame, PollInfo, PollRequest, PollSpec, ShowResults, Tally, Turnout, MAX_OPTION, MAX_OPTIONS,
    MAX_QUESTION, MIN_OPTIONS,
};
use crate::error::AppError;
use crate::realtime::client::{self, Notice};
use crate::realtime::protocol::ServerFrame;
use crate::ui::time::{now_ms, utc_minute};

/// What a card shows: the poll, my choices, and the counts if I may see them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollView {
    pub poll: PollInfo,
    pub mine: Vec<u32>,
    pub may_close: bool,
    pub turnout: Turnout,
    pub tally: Option<Tally>,
    /// I am a guest (the plain form then asks for a name).
    pub guest: bool,
}

#[server(endpoint = "load_poll", output = crate::codec::Json)]
pub async fn load_poll(id: i64) -> Result<PollView, AppError> {
    use super::server::Polls;
    use crate::server::session;
    let who = session::require_identity().await?;
    let polls = session::service::<Polls>()?;
    let (poll, room) = polls.visible(id, &who).await?;
    let mine = polls.store().choices_of(id, &who.key()).await?;
    let tally = polls.results(&poll, &mine).await?;
    let turnout = polls.turnout(&poll).await?;
    Ok(PollView {
        poll: polls.info(&poll, &room),
        may_close: Polls::may_close(&poll, &who),
        mine,
        turnout,
        tally,
        guest: who.user().is_none(),
    })
}

crate::app::lazy_page!(PollRoute, PollPage);

/// A poll's card in a room's timeline, as a module of its own: a room's page fetches it only
/// when the room shows a poll, so that rooms without polls carry none of their code.
#[lazy]
pub async fn poll_card(id: i64, question: String) -> AnyView {
    view! { <PollCard id question initial=None/> }.into_any()
}

/// A poll before its card's module has loaded (and without JavaScript): its question, and a
/// link to its own page, where the plain form votes.
#[component]
pub fn PollPlaceholder(id: i64, question: String) -> impl IntoView {
    view! {
        <div class="poll" data-poll=id.to_string() data-testid="poll">
            <div class="poll-head"><span class="poll-badge">"Poll"</span></div>
            <h3 class="poll-question">{question}</h3>
            <p><a href=format!("/polls/{id}")>"Open the poll"</a></p>
        </div>
    }
}

/// The form that makes a poll, fetched when the composer's Poll button is first pressed.
#[lazy]
pub async fn new_poll_form(topic: String, open: RwSignal<bool>, sent: Callback<(String, String)>) -> AnyView {
    view! { <NewPollForm topic open sent/> }.into_any()
}

/// What an error code from the plain form means.
fn form_error(code: &str) -> &'static str {
    match code {
        "poll_closed" => "The poll is closed: it takes no more votes.",
        "too_many_choices" => "That is more choices than this poll takes.",
        "unknown_option" | "invalid_field" => "Choose at least one of the options.",
        "unknown_poll" => "No such poll.",
        "rate_limited" => "Too many votes at once; wait a moment.",
        _ => "The vote could not be stored; try again.",
    }
}

/// `/polls/<id>`: one poll, readable and votable without JavaScript.
#[component]
pub fn PollPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0));
    let view = Resource::new(move || id.get(), load_poll);
    let refused = move || query.read().get("error").map(|code| form_error(&code));
    view! {
        <section class="poll-page">
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view.await {
                        Ok(found) => {
                            let room = found.poll.room.clone();
                            view! {
                                <p class="back"><a href=format!("/rooms/{room}")>"← #" {room.clone()}</a></p>
                                {refused().map(|text| view! { <p class="error" role="alert">{text}</p> })}
                                <PollCard id=found.poll.id question=found.poll.spec.question.clone() initial=Some(found)/>
                            }.into_any()
                        }
                        Err(AppError::Unauthorized) => view! {
                            <p>"Sign in to see this poll." " " <a class="button" href="/signin">"Sign in"</a></p>
                        }.into_any(),
                        Err(error) => view! { <p class="error" role="alert">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Keep `tally` unless `next` is newer.
fn newer(current: &Option<Tally>, next: &Tally) -> bool {
    current.as_ref().is_none_or(|shown| next.version > shown.version)
}

/// The line under the bars: how many voted, and of those online in the room, how many.
fn turnout_line(turnout: &Turnout) -> String {
    let people = if turnout.voters == 1 { "person has" } else { "people have" };
    let mut line = format!("{} {people} voted", turnout.voters);
    if turnout.online > 0 {
        line.push_str(&format!(" · {} of {} online have voted", turnout.voted_online, turnout.online));
    }
    line
}

/// A poll: its options (a form), the bars when I may see them, turnout, closing, export.
/// `initial`: the state the server rendered (the poll's own page); in a room's timeline the
/// card starts from the question and fills in once subscribed.
#[component]
pub fn PollCard(id: i64, question: String, initial: Option<PollView>) -> impl IntoView {
    let topic = poll_topic(id);
    let state = RwSignal::new(initial);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let picked = RwSignal::new(state.with_untracked(|s| s.as_ref().map(|s| s.mine.clone()).unwrap_or_default()));

    let handle = Arc::new(AtomicU64::new(0));
    {
        let handle = handle.clone();
        let topic = topic.clone();
        Effect::new(move |_| {
            let results_topic = topic.clone();
            let made = client::subscribe(&topic, None, false, move |frame| match frame {
                Notice::Event(PollFrame::Poll { poll, mine, may_close, turnout, .. }) => {
                    let (poll, mine, may_close, turnout) = (poll.clone(), mine.clone(), *may_close, *turnout);
                    picked.set(mine.clone());
                    state.update(|s| {
                        let tally = s.as_ref().and_then(|s| s.tally.clone());
                        let guest = s.as_ref().is_some_and(|s| s.guest);
                        *s = Some(PollView { poll, mine, may_close, turnout, tally, guest });
                    });
                }
                Notice::Event(PollFrame::Tally { version, counts, voters, names, .. }) => {
                    let next =
                        Tally { version: *version, counts: counts.clone(), voters: *voters, names: names.clone() };
                    state.update(|s| {
                        if let Some(s) = s {
                            if newer(&s.tally, &next) {
                                s.turnout.voters = next.voters;
                                s.tally = Some(next);
                            }
                        }
                    });
                }
                Notice::Event(PollFrame::Turnout { voters, online, voted_online, .. }) => {
                    let turnout = Turnout { voters: *voters, online: *online, voted_online: *voted_online };
                    state.update(|s| {
                        if let Some(s) = s {
                            s.turnout = turnout;
                        }
                    });
                }
                Notice::Event(PollFrame::Voted { choices, .. }) => {
                    picked.set(choices.clone());
                    let mut ask = false;
                    state.update(|s| {
                        if let Some(s) = s {
                            s.mine = choices.clone();
                            ask = s.tally.is_none() && s.poll.spec.show_results == ShowResults::Voted;
                        }
                    });
                    if ask {
                        client::send(&PollRequest::Results { id: client::request_id(), topic: results_topic.clone() });
                    }
                }
                Notice::Event(PollFrame::PollClosed { closed_at, .. }) => {
                    state.update(|s| {
                        if let Some(s) = s {
                            s.poll.closed_at = Some(*closed_at);
                        }
                    });
                }
                Notice::Core(ServerFrame::Ack { .. }) => {
                    busy.set(false);
                    error.set(None);
                }
                Notice::Core(ServerFrame::Error { message, .. }) => {
                    busy.set(false);
                    error.set(Some(message.clone()));
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

    let vote = {
        let topic = topic.clone();
        move |choices: Vec<u32>| {
            if choices.is_empty() {
                error.set(Some("Choose at least one option.".into()));
                return;
            }
            let id = client::random_id();
            busy.set(true);
            client::send_durable(&topic, &id, &PollRequest::Vote { id: id.clone(), topic: topic.clone(), choices });
        }
    };
    let close = {
        let topic = topic.clone();
        Callback::new(move |()| {
            let id = client::random_id();
            client::send_durable(&topic, &id, &PollRequest::ClosePoll { id: id.clone(), topic: topic.clone() });
        })
    };

    let hydrated = expect_context::<crate::app::Session>().hydrated;
    let closed = move || state.with(|s| s.as_ref().is_some_and(|s| s.poll.closed_at.is_some()));
    let single = move || state.with(|s| s.as_ref().is_none_or(|s| s.poll.spec.max_choices == 1));
    let shown = move || state.with(|s| s.as_ref().and_then(|s| s.tally.clone()));
    let hidden_note = move || {
        state.with(|s| {
            let s = s.as_ref()?;
            if s.tally.is_some() {
                return None;
            }
            Some(match s.poll.spec.show_results {
                ShowResults::Voted => "Results are shown once you vote.",
                _ => "Results are shown when the poll closes.",
            })
        })
    };

    let options = move || state.with(|s| s.as_ref().map(|s| s.poll.spec.options.clone()).unwrap_or_default());
    let option_rows = {
        let vote = vote.clone();
        move || {
            let tally = shown();
            let total: u64 = tally.as_ref().map_or(0, |t| t.counts.iter().sum());
            let multiple = !single();
            let max = state.with(|s| s.as_ref().map_or(1, |s| s.poll.spec.max_choices)) as usize;
            let is_closed = closed();
            options()
                .into_iter()
                .enumerate()
                .map(|(index, text)| {
                    let index = index as u32;
                    let count = tally.as_ref().and_then(|t| t.counts.get(index as usize).copied());
                    let names = tally.as_ref().and_then(|t| t.names.as_ref()).and_then(|n| n.get(index as usize).cloned());
                    let percent = match count {
                        Some(count) if total > 0 => (count as f64 * 100.0 / total as f64).round() as u64,
                        _ => 0,
                    };
                    let chosen = move || picked.with(|p| p.contains(&index));
                    let full = move || multiple && picked.with(|p| p.len() >= max && !p.contains(&index));
                    let vote = vote.clone();
                    let on_change = move |ev: leptos::ev::Event| {
                        let on = event_target_checked(&ev);
                        if multiple {
                            picked.update(|p| {
                                p.retain(|&c| c != index);
                                if on {
                                    p.push(index);
                                    p.sort_unstable();
                                }
                            });
                        } else if on {
                            // One click votes.
                            picked.set(vec![index]);
                            vote(vec![index]);
                        }
                    };
                    view! {
                        <li class="poll-option" class:chosen=chosen data-option=index.to_string()>
                            <label>
                                <input
                                    type=if multiple { "checkbox" } else { "radio" }
                                    name="choice"
                                    value=index.to_string()
                                    prop:checked=chosen
                                    checked=chosen()
                                    disabled=move || is_closed || full()
                                    on:change=on_change
                                />
                                <span class="poll-text">{text}</span>
                                {count.map(|count| view! {
                                    <span class="poll-count" data-testid="count">{count} " · " {percent} "%"</span>
                                })}
                            </label>
                            {count.map(|_| view! {
                                <div class="poll-bar" aria-hidden="true"><span style=format!("width: {percent}%")></span></div>
                            })}
                            {names.filter(|n| !n.is_empty()).map(|names| view! { <p class="poll-names">{names.join(", ")}</p> })}
                        </li>
                    }
                })
                .collect_view()
        }
    };

    let submit = {
        let vote = vote.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            vote(picked.get_untracked());
        }
    };
    let status = move || {
        state.with(|s| {
            let s = s.as_ref()?;
            Some(match (s.poll.closed_at, s.poll.spec.closes_at) {
                (Some(_), _) => "Closed".to_owned(),
                (None, Some(at)) => format!("Closes {} UTC", utc_minute(at)),
                (None, None) => "Open".to_owned(),
            })
        })
    };
    let kind = move || {
        state.with(|s| {
            let s = s.as_ref()?;
            let mut parts = Vec::new();
            parts.push(if s.poll.spec.max_choices == 1 {
                "one choice".to_owned()
            } else {
                format!("up to {} choices", s.poll.spec.max_choices)
            });
            parts.push(if s.poll.spec.anonymous { "anonymous".to_owned() } else { "named".to_owned() });
            parts.push(format!("by {}", s.poll.creator));
            Some(parts.join(" · "))
        })
    };
    let loaded = move || state.with(Option::is_some);
    let guest = move || state.with(|s| s.as_ref().is_some_and(|s| s.guest));

    view! {
        <div class="poll" data-poll=id.to_string() data-testid="poll" class:closed=closed>
            <div class="poll-head">
                <span class="poll-badge">"Poll"</span>
                <span class="poll-status" data-testid="poll-status">{status}</span>
            </div>
            <h3 class="poll-question">{question}</h3>
            <p class="poll-kind">{kind}</p>
            <Show when=loaded fallback=move || view! {
                <p><a href=format!("/polls/{id}")>"Open the poll"</a></p>
            }>
                <form class="poll-form" method="post" action=format!("/polls/{id}/vote") on:submit=submit.clone()>
                    <ul class="poll-options">{option_rows.clone()}</ul>
                    // Without JavaScript a guest names themself here; the live connection has
                    // their name already.
                    <Show when=move || guest() && !hydrated.get()>
                        <label class="poll-guest">"Your name " <input name="name" maxlength="32"/></label>
                    </Show>
                    <div class="poll-actions">
                        // With JavaScript one click votes in a single-choice poll: no button.
                        <Show when=move || !(closed() || single() && hydrated.get())>
                            <button type="submit" class="poll-vote" disabled=move || busy.get()>
                                {move || if state.with(|s| s.as_ref().is_none_or(|s| s.mine.is_empty())) { "Vote" } else { "Change vote" }}
                            </button>
                        </Show>
                        <Show when=move || !closed() && state.with(|s| s.as_ref().is_some_and(|s| s.may_close))>
                            <button type="button" class="link poll-close" on:click=move |_| close.run(())>"Close poll"</button>
                        </Show>
                        <Show when=move || shown().is_some()>
                            <a class="poll-export" href=format!("/api/polls/{id}/results.csv") download>"Export CSV"</a>
                        </Show>
                    </div>
                </form>
                <p class="poll-turnout" data-testid="turnout">
                    {move || state.with(|s| s.as_ref().map(|s| turnout_line(&s.turnout)))}
                </p>
                {move || hidden_note().map(|note| view! { <p class="poll-hidden" data-testid="hidden">{note}</p> })}
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </Show>
        </div>
    }
}

/// A poll being written in the room's composer.
#[derive(Clone, Debug, PartialEq)]
struct Draft {
    question: String,
    options: Vec<String>,
    multiple: bool,
    max_choices: u32,
    anonymous: bool,
    show_results: ShowResults,
    /// Minutes until it closes by itself; 0: never.
    closes_in: u32,
}

impl Default for Draft {
    fn default() -> Draft {
        Draft {
            question: String::new(),
            options: vec![String::new(), String::new()],
            multiple: false,
            max_choices: 2,
            anonymous: false,
            show_results: ShowResults::Always,
            closes_in: 0,
        }
    }
}

/// The form that makes a poll in `topic` (`chat:<room>`). `sent` hears the request's id and
/// question, for the room's pending list.
#[component]
pub fn NewPollForm(topic: String, open: RwSignal<bool>, sent: Callback<(String, String)>) -> impl IntoView {
    let draft = RwSignal::new(Draft::default());
    let problem = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let d = draft.get_untracked();
        let options: Vec<String> = d.options.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
        if d.question.trim().is_empty() {
            return problem.set(Some("Write a question.".into()));
        }
        if options.len() < MIN_OPTIONS {
            return problem.set(Some(format!("A poll has at least {MIN_OPTIONS} options.")));
        }
        let max_choices = if d.multiple { d.max_choices.clamp(1, options.len() as u32) } else { 1 };
        let closes_at = (d.closes_in > 0).then(|| now_ms() as i64 + i64::from(d.closes_in) * 60_000);
        let id = client::random_id();
        let question = d.question.trim().to_owned();
        let spec = PollSpec {
            question: question.clone(),
            options,
            max_choices,
            anonymous: d.anonymous,
            show_results: d.show_results,
            closes_at,
        };
        let request = PollRequest::CreatePoll { id: id.clone(), topic: topic.clone(), spec };
        client::send_durable(&topic, &id, &request);
        sent.run((id, question));
        draft.set(Draft::default());
        problem.set(None);
        open.set(false);
    };
    let option_inputs = move || {
        let count = draft.with(|d| d.options.len());
        (0..count)
            .map(|index| {
                view! {
                    <li>
                        <input
                            aria-label=format!("Option {}", index + 1)
                            placeholder=format!("Option {}", index + 1)
                            maxlength=MAX_OPTION.to_string()
                            prop:value=move || draft.with(|d| d.options.get(index).cloned().unwrap_or_default())
                            on:input=move |ev| draft.update(|d| if let Some(o) = d.options.get_mut(index) { *o = event_target_value(&ev) })
                        />
                        <Show when=move || draft.with(|d| d.options.len() > MIN_OPTIONS)>
                            <button type="button" class="link" aria-label=format!("Remove option {}", index + 1)
                                on:click=move |_| draft.update(|d| { d.options.remove(index); })>"×"</button>
                        </Show>
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <form class="new-poll" on:submit=submit data-testid="new-poll">
            <label>"Question"
                <input name="question" required maxlength=MAX_QUESTION.to_string()
                    prop:value=move || draft.with(|d| d.question.clone())
                    on:input=move |ev| draft.update(|d| d.question = event_target_value(&ev))/>
            </label>
            <ol class="new-poll-options">{option_inputs}</ol>
            <Show when=move || draft.with(|d| d.options.len() < MAX_OPTIONS)>
                <button type="button" class="link" on:click=move |_| draft.update(|d| d.options.push(String::new()))>"+ Add option"</button>
            </Show>
            <div class="new-poll-settings">
                <label class="check">
                    <input type="checkbox" prop:checked=move || draft.with(|d| d.multiple)
                        on:change=move |ev| draft.update(|d| d.multiple = event_target_checked(&ev))/>
                    " Several choices, up to "
                </label>
                <input type="number" min="1" max=MAX_OPTIONS.to_string() class="new-poll-max" aria-label="Most choices"
                    disabled=move || draft.with(|d| !d.multiple)
                    prop:value=move || draft.with(|d| d.max_choices.to_string())
                    on:input=move |ev| draft.update(|d| d.max_choices = event_target_value(&ev).parse().unwrap_or(1))/>
                <label class="check">
                    <input type="checkbox" prop:checked=move || draft.with(|d| d.anonymous)
                        on:change=move |ev| draft.update(|d| d.anonymous = event_target_checked(&ev))/>
                    " Anonymous"
                </label>
                <label>"Results "
                    <select aria-label="Show results" on:change=move |ev| {
                        let chosen = ShowResults::parse(&event_target_value(&ev)).unwrap_or(ShowResults::Always);
                        draft.update(|d| d.show_results = chosen);
                    }>
                        <option value="always" selected=move || draft.with(|d| d.show_results == ShowResults::Always)>"always"</option>
                        <option value="voted" selected=move || draft.with(|d| d.show_results == ShowResults::Voted)>"after voting"</option>
                        <option value="closed" selected=move || draft.with(|d| d.show_results == ShowResults::Closed)>"when closed"</option>
                    </select>
                </label>
                <label>"Closes "
                    <select aria-label="Closes" on:change=move |ev| {
                        let minutes = event_target_value(&ev).parse().unwrap_or(0);
                        draft.update(|d| d.closes_in = minutes);
                    }>
                        <option value="0">"by hand"</option>
                        <option value="5">"in 5 minutes"</option>
                        <option value="15">"in 15 minutes"</option>
                        <option value="60">"in an hour"</option>
                        <option value="1440">"in a day"</option>
                    </select>
                </label>
            </div>
            {move || problem.get().map(|p| view! { <p class="error" role="alert">{p}</p> })}
            <div class="new-poll-actions">
                <button type="submit">"Post poll"</button>
                <button type="button" class="link" on:click=move |_| open.set(false)>"Cancel"</button>
            </div>
        </form>
    }
}
