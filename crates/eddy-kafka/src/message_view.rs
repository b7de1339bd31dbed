//! A consumed message's fields read straight from librdkafka's memory, as a record — without
//! rdkafka's accessors, which panic on a header name that is not UTF-8 (a producer's choice).

use std::ffi::CStr;
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

use eddy_runtime::RecordRef;

/// A consumed message, read while it lives (`'m`).
#[derive(Clone, Copy)]
pub(crate) struct MessageView<'m>(&'m rd::rd_kafka_message_t);

impl<'m> MessageView<'m> {
    /// A view of a message that lives as long as `'m`.
    ///
    /// # Safety
    /// `message` must point to a librdkafka message that is not destroyed during `'m`.
    pub(crate) unsafe fn new(message: NonNull<rd::rd_kafka_message_t>) -> Self {
        // SAFETY: see the function's contract.
        MessageView(unsafe { message.as_ref() })
    }

    /// A view of a message polled through rdkafka.
    pub(crate) fn of(message: &'m BorrowedMessage<'_>) -> Option<Self> {
        let message = NonNull::new(message.ptr())?;
        // SAFETY: a borrowed message lives as long as the borrow.
        Some(unsafe { MessageView::new(message) })
    }

    /// The message itself.
    pub(crate) fn raw(&self) -> &'m rd::rd_kafka_message_t {
        self.0
    }

    /// The error librdkafka reports in place of a message (a partition it cannot fetch), if any.
    pub(crate) fn error(&self) -> Option<String> {
        let err = self.raw().err;
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: librdkafka returns a static string for every error code.
        let text = unsafe { CStr::from_ptr(rd::rd_kafka_err2str(err)) };
        Some(text.to_string_lossy().into_owned())
    }

    /// The topic the message was read from (empty if librdkafka knew it by a name that is not
    /// UTF-8, which brokers do not allow).
    pub(crate) fn topic(&self) -> &'m str {
        // SAFETY: a fetched message's topic handle and its name live as long as the message.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.raw().rkt)) };
        name.to_str().unwrap_or_default()
    }

    /// The message's headers, if it has any.
    fn headers(&self) -> Option<NonNull<rd::rd_kafka_headers_t>> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: the headers are parsed into (and owned by) the message, which lives on.
        let err = unsafe { rd::rd_kafka_message_headers(self.0, &mut headers) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        NonNull::new(headers)
    }
}

/// The bytes at `ptr`, `len` long; none for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point to `len` bytes that live as long as `'a`.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: see the function's contract.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

impl RecordRef for MessageView<'_> {
    fn key(&self) -> Option<&[u8]> {
        let m = self.raw();
        // SAFETY: a message's key lives as long as the message.
        unsafe { bytes(m.key, m.key_len) }
    }

    fn value(&self) -> Option<&[u8]> {
        let m = self.raw();
        // SAFETY: a message's payload lives as long as the message.
        unsafe { bytes(m.payload, m.len) }
    }

    /// The message's timestamp in milliseconds, 0 when it has none (as for a polled message).
    fn timestamp(&self) -> i64 {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: reads the message's own fields.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        if t == -1 || kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE {
            0
        } else {
            t
        }
    }

    fn partition(&self) -> i32 {
        self.raw().partition
    }

    fn offset(&self) -> i64 {
        self.raw().offset
    }

    fn header_count(&self) -> usize {
        // SAFETY: the headers belong to the message, which lives on.
        self.headers()
            .map_or(0, |h| unsafe { rd::rd_kafka_header_cnt(h.as_ptr()) })
    }

    /// The `i`-th header; none past the last, and none for a header whose name is not UTF-8 (a
    /// producer's choice Eddy cannot show as a string: the header is left out).
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        let headers = self.headers()?;
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
        // SAFETY: librdkafka checks `i` against the count; what it points to lives with the
        // message.
        let err = unsafe {
            rd::rd_kafka_header_get_all(headers.as_ptr(), i, &mut name, &mut value, &mut size)
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: a header's name is a NUL-terminated string, its value `size` bytes, both alive
        // as long as the message.
        let key = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
        Some((key, unsafe { bytes(value, size) }))
    }
}
