//! A generation's inputs as persisted in `workflows.inputs`: each image is either already in
//! our storage or a URL still to be fetched.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputImage {
    /// In our storage under this key (a `data:` image or an upload).
    Stored(String),
    /// An `https://` (or allowed `http://`) URL, fetched when the workflow needs it.
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub person_image: InputImage,
    pub garment_image: InputImage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
}

impl Inputs {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("inputs serialise")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Where an input image of a generation is kept in our storage.
pub fn input_key(generation_id: Uuid, field: &str) -> String {
    format!("inputs/{}/{generation_id}-{field}", shard(generation_id))
}

/// Where a generation's result is kept in our storage.
pub fn result_key(generation_id: Uuid) -> String {
    format!("results/{}/{generation_id}", shard(generation_id))
}

/// The generation whose result `key` is, if it is a result's key (the inverse of
/// `result_key`).
pub fn generation_of_result_key(key: &str) -> Option<Uuid> {
    let id = Uuid::parse_str(key.rsplit('/').next()?).ok()?;
    (result_key(id) == key).then_some(id)
}

/// One of 256 directories, from the id's random last byte: files spread over directories
/// instead of queueing on one directory's lock, and no directory is made per generation.
fn shard(id: Uuid) -> String {
    format!("{:02x}", id.as_bytes()[15])
}
