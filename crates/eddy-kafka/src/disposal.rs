//! Giving consumed messages back to librdkafka off the thread that reads them.
//!
//! Destroying a message taken from a batch costs librdkafka a lock, reference counts on its fetch
//! buffer and partition, and frees — a fifth of a stateless query's thread at a high rate. A
//! reader's messages are collected as they are dropped and, when a batch leaves many, destroyed by
//! a thread of the reader's own (librdkafka lets any thread destroy a message while its client
//! lives); a few — a low rate — are destroyed in place, so no thread is woken for them.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rdkafka::bindings as rd;

/// Fewer dropped messages than this are destroyed in place.
const HAND_OFF: usize = 256;
/// Batches of messages waiting for the disposal thread; beyond them, a batch is destroyed in place.
const WAITING: usize = 4;

/// A message taken from a batch, owned until destroyed.
struct Taken(NonNull<rd::rd_kafka_message_t>);

// SAFETY: librdkafka lets any thread destroy a message; a `Taken` is destroyed once, by one thread.
unsafe impl Send for Taken {}

impl Taken {
    fn destroy(self) {
        // SAFETY: the message is owned here (see `Bin::put`) and destroyed once.
        unsafe { rd::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

/// The messages dropped since the last flush, while the reader is open.
struct Dropped {
    messages: Vec<Taken>,
    open: bool,
}

/// Where a message goes when it is dropped; shared by the messages of one reader.
#[derive(Clone)]
pub(crate) struct Bin(Rc<RefCell<Dropped>>);

impl Bin {
    /// Takes a dropped message: kept for the reader's next flush, or destroyed now once the reader
    /// is closed.
    ///
    /// # Safety
    /// `message` must be a message taken from a batch, not destroyed yet, whose consumer outlives
    /// the reader this bin belongs to; it must not be used again.
    pub(crate) unsafe fn put(&self, message: NonNull<rd::rd_kafka_message_t>) {
        let mut dropped = self.0.borrow_mut();
        if dropped.open {
            dropped.messages.push(Taken(message));
        } else {
            drop(dropped);
            Taken(message).destroy();
        }
    }
}

/// A reader's disposal of the messages it took: its bin, and its thread once one was needed.
pub(crate) struct Disposal {
    bin: Bin,
    thread: Option<(SyncSender<Vec<Taken>>, JoinHandle<()>)>,
}

impl Disposal {
    pub(crate) fn new() -> Self {
        Disposal {
            bin: Bin(Rc::new(RefCell::new(Dropped {
                messages: Vec::new(),
                open: true,
            }))),
            thread: None,
        }
    }

    /// The bin the reader's messages are dropped into.
    pub(crate) fn bin(&self) -> Bin {
        self.bin.clone()
    }

    /// Destroys the messages dropped since the last flush: here when few, else on the disposal
    /// thread (started the first time), or here again when that thread is behind or missing.
    pub(crate) fn flush(&mut self) {
        let messages = std::mem::take(&mut self.bin.0.borrow_mut().messages);
        if messages.len() < HAND_OFF {
            messages.into_iter().for_each(Taken::destroy);
            return;
        }
        if self.thread.is_none() {
            self.thread = spawn();
        }
        let left = match &self.thread {
            Some((tx, _)) => match tx.try_send(messages) {
                Ok(()) => return,
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => m,
            },
            None => messages,
        };
        left.into_iter().for_each(Taken::destroy);
    }

    /// Destroys every message dropped so far and waits for the disposal thread to finish; messages
    /// dropped later are destroyed as they are dropped. Runs before the reader's consumer closes.
    pub(crate) fn close(&mut self) {
        self.flush();
        self.bin.0.borrow_mut().open = false;
        self.flush();
        if let Some((tx, thread)) = self.thread.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Drop for Disposal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts a disposal thread; none when the system has no thread to give (messages are then
/// destroyed in place).
fn spawn() -> Option<(SyncSender<Vec<Taken>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<Vec<Taken>>(WAITING);
    let thread = std::thread::Builder::new()
        .name("consumed-disposal".into())
        .spawn(move || {
            for messages in rx {
                messages.into_iter().for_each(Taken::destroy);
            }
        })
        .map_err(|e| tracing::warn!("no thread to destroy consumed messages on: {e}"))
        .ok()?;
    Some((tx, thread))
}
