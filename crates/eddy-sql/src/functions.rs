//! ksqlDB's built-in functions on DataFusion.
