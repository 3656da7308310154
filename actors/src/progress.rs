//! How a long operator command reports how far it got (`atelier verify`, bulk actions,
//! `bench`): the work says which phase it is in and how many items it did; the command line
//! decides how to show it (a bar on a terminal, plain lines when piped).
pub trait Progress: Send + Sync {
    /// A phase of `total` items begins (`None`: the total is not known).
    fn phase(&self, name: &str, total: Option<u64>);
    /// `items` more of the current phase are done.
    fn advance(&self, items: u64);
    /// The current phase is over.
    fn finish(&self);
}

/// Reports nowhere: for callers that show no progress (the HTTP API, tests).
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
