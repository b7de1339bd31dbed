//! Kafka records as the runtime sees them: borrowed views for decoding, owned records for producing.

/// Read access to a consumed record, so decoders work on broker messages and in-memory records alike.
pub trait RecordRef {
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> Option<&[u8]>;
    /// Record timestamp, epoch milliseconds.
    fn timestamp(&self) -> i64;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    /// How many headers the record has.
    fn header_count(&self) -> usize {
        0
    }
    /// Header `i` (in the record's order): its key and value.
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        let _ = i;
        None
    }
}

/// A record's headers, in order: key and value.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// An owned record: what in-memory topics hold and what sinks produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    /// The partition the record is in, or should go to (`-1`: let the producer choose).
    pub partition: i32,
    pub offset: i64,
    pub headers: Headers,
}

impl Record {
    /// An owned copy of a record.
    pub fn copy_of<R: RecordRef>(r: &R) -> Record {
        Record {
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            timestamp: r.timestamp(),
            partition: r.partition(),
            offset: r.offset(),
            headers: (0..r.header_count())
                .filter_map(|i| r.header(i))
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

impl RecordRef for Record {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn timestamp(&self) -> i64 {
        self.timestamp
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn header_count(&self) -> usize {
        self.headers.len()
    }
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        self.headers.get(i).map(|(k, v)| (k.as_str(), v.as_deref()))
    }
}

impl<T: RecordRef> RecordRef for &T {
    fn key(&self) -> Option<&[u8]> {
        (*self).key()
    }
    fn value(&self) -> Option<&[u8]> {
        (*self).value()
    }
    fn timestamp(&self) -> i64 {
        (*self).timestamp()
    }
    fn partition(&self) -> i32 {
        (*self).partition()
    }
    fn offset(&self) -> i64 {
        (*self).offset()
    }
    fn header_count(&self) -> usize {
        (*self).header_count()
    }
    fn header(&self, i: usize) -> Option<(&str, Option<&[u8]>)> {
        (*self).header(i)
    }
}
