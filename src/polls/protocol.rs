//! What a poll is on the wire, and the rules a new poll and a vote must keep (checked on the
//! server; the page checks the same before it sends).

use serde::{Deserialize, Serialize};

use crate::realtime::protocol::ErrorCode;

/// The most options a poll has, and the fewest.
pub const MAX_OPTIONS: usize = 20;
pub const MIN_OPTIONS: usize = 2;
/// Characters in a question, and in an option.
pub const MAX_QUESTION: usize = 300;
pub const MAX_OPTION: usize = 200;

/// When a poll's results are shown.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShowResults {
    /// To everyone, all along.
    Always,
    /// To each person once they have voted, and to everyone once the poll is closed.
    Voted,
    /// To everyone once the poll is closed.
    Closed,
}

impl ShowResults {
    pub fn as_str(self) -> &'static str {
        match self {
            ShowResults::Always => "always",
            ShowResults::Voted => "voted",
            ShowResults::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<ShowResults> {
        match text {
            "always" => Some(ShowResults::Always),
            "voted" => Some(ShowResults::Voted),
            "closed" => Some(ShowResults::Closed),
            _ => None,
        }
    }

    /// Whether someone may see the counts now.
    pub fn visible(self, has_voted: bool, closed: bool) -> bool {
        match self {
            ShowResults::Always => true,
            ShowResults::Voted => has_voted || closed,
            ShowResults::Closed => closed,
        }
    }
}

/// A poll as its creator asks for it (`create_poll`'s fields, the API's body), with its
/// defaults: single choice, named, results always shown, closed by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollSpec {
    pub question: String,
    pub options: Vec<String>,
    /// Most options one voter may choose: 1 for single choice.
    #[serde(default = "one")]
    pub max_choices: u32,
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default = "always")]
    pub show_results: ShowResults,
    /// When it closes by itself, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub closes_at: Option<i64>,
}

fn one() -> u32 {
    1
}

fn always() -> ShowResults {
    ShowResults::Always
}

/// Why a poll or a vote was refused. Each has a stable code (the protocol's `error.code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("a question is 1 to {MAX_QUESTION} characters")]
    BadQuestion,
    #[error("a poll has {MIN_OPTIONS} to {MAX_OPTIONS} options")]
    OptionCount,
    #[error("an option is 1 to {MAX_OPTION} characters, and no two are the same")]
    BadOption,
    #[error("at most as many choices as options, and at least one")]
    BadMaximum,
    #[error("a poll closes in the future")]
    ClosesInThePast,
    #[error("no such poll")]
    UnknownPoll,
    #[error("no such option")]
    UnknownOption,
    #[error("choose at least one option, each once")]
    NoChoice,
    #[error("this poll takes at most {0} choices")]
    TooManyChoices(u32),
    #[error("the poll is closed")]
    Closed,
}

impl PollError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PollError::BadQuestion
            | PollError::OptionCount
            | PollError::BadOption
            | PollError::BadMaximum
            | PollError::ClosesInThePast
            | PollError::NoChoice => ErrorCode::InvalidField,
            PollError::UnknownPoll => ErrorCode::UnknownPoll,
            PollError::UnknownOption => ErrorCode::UnknownOption,
            PollError::TooManyChoices(_) => ErrorCode::TooManyChoices,
            PollError::Closed => ErrorCode::PollClosed,
        }
    }
}

impl PollSpec {
    /// The spec with its texts trimmed, if it keeps every rule (`now`: ms since the epoch).
    pub fn checked(mut self, now: i64) -> Result<PollSpec, PollError> {
        self.question = self.question.trim().to_owned();
        let chars = self.question.chars().count();
        if chars == 0 || chars > MAX_QUESTION {
            return Err(PollError::BadQuestion);
        }
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&self.options.len()) {
            return Err(PollError::OptionCount);
        }
        for option in &mut self.options {
            *option = option.trim().to_owned();
            let chars = option.chars().count();
            if chars == 0 || chars > MAX_OPTION {
                return Err(PollError::BadOption);
            }
        }
        let mut seen: Vec<&str> = self.options.iter().map(String::as_str).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(PollError::BadOption);
        }
        if self.max_choices == 0 || self.max_choices as usize > self.options.len() {
            return Err(PollError::BadMaximum);
        }
        if self.closes_at.is_some_and(|at| at <= now) {
            return Err(PollError::ClosesInThePast);
        }
        Ok(self)
    }
}

/// Check a voter's choices against a poll of `options` options taking at most `max_choices`:
/// the choices sorted, each once.
pub fn check_choices(mut choices: Vec<u32>, options: usize, max_choices: u32) -> Result<Vec<u32>, PollError> {
    choices.sort_unstable();
    let before = choices.len();
    choices.dedup();
    if choices.is_empty() || choices.len() != before {
        return Err(PollError::NoChoice);
    }
    if choices.iter().any(|&c| c as usize >= options) {
        return Err(PollError::UnknownOption);
    }
    if choices.len() > max_choices as usize {
        return Err(PollError::TooManyChoices(max_choices));
    }
    Ok(choices)
}

/// The topic of a poll: its state, who voted, and (to whom may see them) its tallies.
pub const POLL_TOPIC_PREFIX: &str = "poll:";

pub fn poll_topic(id: i64) -> String {
    format!("{POLL_TOPIC_PREFIX}{id}")
}

/// The poll a `poll:<id>` topic names.
pub fn parse_poll_topic(topic: &str) -> Option<i64> {
    let id = topic.strip_prefix(POLL_TOPIC_PREFIX)?;
    if id.starts_with('+') {
        return None;
    }
    id.parse::<i64>().ok().filter(|&id| id > 0)
}

/// In a named poll's tallies, at most this many names per option (the CSV export has them all).
pub const NAMES_SHOWN: usize = 100;

/// A poll as everyone who may see its room sees it: never its counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollInfo {
    pub id: i64,
    pub room: String,
    /// The name of who made it.
    pub creator: String,
    #[serde(flatten)]
    pub spec: PollSpec,
    /// When it was closed, once it is.
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

/// How many voted, and of those online in the poll's room, how many voted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Turnout {
    pub voters: u64,
    pub online: u64,
    pub voted_online: u64,
}

/// A poll's whole counts: each tally replaces the one before it, and a client keeps the one
/// with the highest `version` (so one lost or repeated changes nothing).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub version: u64,
    /// Per option, in the poll's order.
    pub counts: Vec<u64>,
    /// How many people voted.
    pub voters: u64,
    /// A named poll's voters, per option (at most [`NAMES_SHOWN`] each); never in an anonymous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<Vec<String>>>,
}

/// Polls' requests over `/ws`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PollRequest {
    /// Make a poll in a room (`topic`: `chat:<room>`); it appears in the room's timeline. Answered
    /// by `ack` with the offset of its message, like a publish, once it is stored.
    CreatePoll {
        id: String,
        topic: String,
        #[serde(flatten)]
        spec: PollSpec,
    },
    /// Vote (`topic`: `poll:<id>`), replacing my earlier vote. Answered by `ack` once stored.
    Vote { id: String, topic: String, choices: Vec<u32> },
    /// Close the poll (its creator, or an admin). Answered by `ack`.
    ClosePoll { id: String, topic: String },
    /// Send me the poll's tally, if I may see it now (after voting in another tab).
    Results { id: String, topic: String },
}

impl PollRequest {
    pub const TYPES: [&'static str; 4] = ["create_poll", "vote", "close_poll", "results"];
}

/// Polls' frames from the server, on `poll:<id>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PollFrame {
    /// The poll, first on subscribing: what it asks, my choices (empty: I have not voted),
    /// whether I may close it, and its turnout.
    Poll { topic: String, poll: PollInfo, mine: Vec<u32>, may_close: bool, turnout: Turnout },
    /// The whole counts, to those who may see them.
    Tally {
        topic: String,
        version: u64,
        counts: Vec<u64>,
        voters: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        names: Option<Vec<Vec<String>>>,
    },
    /// Turnout changed.
    Turnout { topic: String, voters: u64, online: u64, voted_online: u64 },
    /// I voted (in this tab or another): my choices now.
    Voted { topic: String, choices: Vec<u32> },
    /// The poll closed: no more votes; the final tally follows, to everyone.
    PollClosed { topic: String, closed_at: i64 },
}

impl PollFrame {
    pub fn tally(topic: String, tally: Tally) -> PollFrame {
        let Tally { version, counts, voters, names } = tally;
        PollFrame::Tally { topic, version, counts, voters, names }
    }

    pub fn turnout(topic: String, turnout: Turnout) -> PollFrame {
        let Turnout { voters, online, voted_online } = turnout;
        PollFrame::Turnout { topic, voters, online, voted_online }
    }
}

impl crate::realtime::protocol::FeatureFrame for PollFrame {
    fn from_json(text: &str) -> Result<PollFrame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(question: &str, options: &[&str], max_choices: u32) -> PollSpec {
        PollSpec {
            question: question.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            max_choices,
            anonymous: false,
            show_results: ShowResults::Always,
            closes_at: None,
        }
    }

    #[test]
    fn a_poll_keeps_every_rule_or_says_which_it_breaks() {
        let ok = spec("  Lunch?  ", &[" pizza ", "soup"], 1).checked(0).unwrap();
        assert_eq!((ok.question.as_str(), ok.options[0].as_str()), ("Lunch?", "pizza"));
        assert_eq!(spec("   ", &["a", "b"], 1).checked(0), Err(PollError::BadQuestion));
        assert_eq!(spec(&"q".repeat(301), &["a", "b"], 1).checked(0), Err(PollError::BadQuestion));
        assert_eq!(spec("q", &["a"], 1).checked(0), Err(PollError::OptionCount));
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(spec("q", &many, 1).checked(0), Err(PollError::OptionCount));
        assert!(spec("q", &many[..20], 20).checked(0).is_ok());
        assert_eq!(spec("q", &["a", " "], 1).checked(0), Err(PollError::BadOption));
        assert_eq!(spec("q", &["a", " a"], 1).checked(0), Err(PollError::BadOption), "the same option twice");
        assert_eq!(spec("q", &["a", &"x".repeat(201)], 1).checked(0), Err(PollError::BadOption));
        assert_eq!(spec("q", &["a", "b"], 0).checked(0), Err(PollError::BadMaximum));
        assert_eq!(spec("q", &["a", "b"], 3).checked(0), Err(PollError::BadMaximum));
        let late = PollSpec { closes_at: Some(100), ..spec("q", &["a", "b"], 1) };
        assert_eq!(late.clone().checked(100), Err(PollError::ClosesInThePast));
        assert!(late.checked(99).is_ok());
    }

    #[test]
    fn choices_are_known_options_each_once_up_to_the_maximum() {
        assert_eq!(check_choices(vec![2, 0], 3, 2), Ok(vec![0, 2]));
        assert_eq!(check_choices(vec![], 3, 2), Err(PollError::NoChoice));
        assert_eq!(check_choices(vec![1, 1], 3, 2), Err(PollError::NoChoice));
        assert_eq!(check_choices(vec![3], 3, 2), Err(PollError::UnknownOption));
        assert_eq!(check_choices(vec![0, 1, 2], 3, 2), Err(PollError::TooManyChoices(2)));
    }

    #[test]
    fn poll_topics_name_a_positive_id() {
        assert_eq!(parse_poll_topic(&poll_topic(7)), Some(7));
        for bad in ["poll:", "poll:0", "poll:-1", "poll:+1", "poll:x", "polls:1", "poll:1 "] {
            assert_eq!(parse_poll_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_read_with_their_defaults_and_frames_round_trip() {
        let text = r#"{"type":"create_poll","id":"1","topic":"chat:lobby","question":"q","options":["a","b"]}"#;
        let request: PollRequest = serde_json::from_str(text).unwrap();
        let PollRequest::CreatePoll { spec, .. } = request else { panic!("not a create_poll: {request:?}") };
        assert_eq!((spec.max_choices, spec.anonymous, spec.show_results), (1, false, ShowResults::Always));
        let bad = r#"{"type":"vote","id":"1","topic":"poll:1","choices":[-1]}"#;
        assert!(serde_json::from_str::<PollRequest>(bad).is_err(), "a negative choice is not a choice");
        let tally = Tally { version: 3, counts: vec![1, 2], voters: 3, names: None };
        let frame = PollFrame::tally("poll:1".into(), tally);
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(text, r#"{"type":"tally","topic":"poll:1","version":3,"counts":[1,2],"voters":3}"#);
        use crate::realtime::protocol::FeatureFrame;
        assert_eq!(PollFrame::from_json(&text).unwrap(), frame);
    }

    #[test]
    fn results_show_to_whom_the_poll_says() {
        use ShowResults::*;
        assert!(Always.visible(false, false));
        assert!(!Voted.visible(false, false) && Voted.visible(true, false) && Voted.visible(false, true));
        assert!(!Closed.visible(true, false) && Closed.visible(false, true));
        assert_eq!(ShowResults::parse(Voted.as_str()), Some(Voted));
        assert_eq!(ShowResults::parse("sometimes"), None);
    }
}
