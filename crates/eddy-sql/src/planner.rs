//! Plans queries onto DataFusion.
