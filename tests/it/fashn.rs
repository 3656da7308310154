//! The FASHN adapter against the emulator of its task API (`emulators/fashn.rs`), through the
//! whole service: every scenario of `unsigned_callbacks`, on both databases.
use crate::emulators::task_api::Wire;

crate::unsigned_callback_tests!(Wire::Fashn);
