//! How server functions' results travel: JSON, as with `server_fn`'s own `Json`, but read
//! in the browser with `serde_json::from_str`.
//!
//! Leptos reads the data that a page's resources carry from the server render with
//! `from_str`; `server_fn`'s `Json` reads a result with `from_slice`. Every type that arrives
//! both ways (a room's page, the sensor list, the current user …) then had two decoders in
//! the bundle, one per reader. With this encoding there is one.

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The JSON encoding of results, read from a `&str` (see the module's doc).
pub struct JsonText;

/// Results as [`JsonText`]: give a server function `output = crate::codec::Json` and leave
/// `input` at its default, `PostUrl`, so that its arguments still travel as a form (which
/// `<ActionForm>` needs). As an `input`, this type would send arguments as JSON.
pub type Json = Post<JsonText>;

impl ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonText {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        // Never `from_slice` (that would bring its decoders back): bytes that are not UTF-8
        // are refused first.
        let text = std::str::from_utf8(&bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}
