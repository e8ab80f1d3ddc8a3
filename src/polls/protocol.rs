//! What a poll is on the wire, and the rules a new poll and a vote must keep (checked on the
//! server; the page checks the same before it sends).

use serde::{Deserialize, Serialize};

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

/// A poll as its creator asks for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollSpec {
    pub question: String,
    pub options: Vec<String>,
    /// Most options one voter may choose: 1 for single choice.
    pub max_choices: u32,
    pub anonymous: bool,
    pub show_results: ShowResults,
    /// When it closes by itself, in milliseconds since the Unix epoch.
    pub closes_at: Option<i64>,
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
    pub fn code(&self) -> &'static str {
        match self {
            PollError::BadQuestion
            | PollError::OptionCount
            | PollError::BadOption
            | PollError::BadMaximum
            | PollError::ClosesInThePast => "invalid_field",
            PollError::UnknownPoll => "unknown_poll",
            PollError::UnknownOption => "unknown_option",
            PollError::NoChoice => "invalid_field",
            PollError::TooManyChoices(_) => "too_many_choices",
            PollError::Closed => "poll_closed",
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
    fn results_show_to_whom_the_poll_says() {
        use ShowResults::*;
        assert!(Always.visible(false, false));
        assert!(!Voted.visible(false, false) && Voted.visible(true, false) && Voted.visible(false, true));
        assert!(!Closed.visible(true, false) && Closed.visible(false, true));
        assert_eq!(ShowResults::parse(Voted.as_str()), Some(Voted));
        assert_eq!(ShowResults::parse("sometimes"), None);
    }
}
