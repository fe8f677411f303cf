//! drainhook: holds a terminating EC2 Auto Scaling instance until filebeat has
//! shipped every log line, then lets it go.
//!
//! Data flows one way: lifecycle event → hold → drain → complete.
//! - [`registry`] reads filebeat's registry in every on-disk format;
//! - [`backlog`] matches its entries to files and says what is left to ship;
//! - [`drain`] waits until nothing is left.

pub mod agent;
pub mod backlog;
pub mod check;
pub mod config;
pub mod diskqueue;
pub mod drain;
pub mod duration;
pub mod exit;
pub mod imds;
pub mod lifecycle;
pub mod logging;
pub mod message;
pub mod registry;
pub mod report;
pub mod sdnotify;
pub mod shipper;
pub mod trust;
pub mod utc;
