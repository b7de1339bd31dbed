//! The catalog: streams and tables Eddy knows, with their columns, formats and topics.
