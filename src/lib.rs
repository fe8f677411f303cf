//! drainhook: holds a terminating EC2 Auto Scaling instance until its log shippers have
//! delivered every log line, then lets it go.
//!
//! Data flows one way: lifecycle event → hold → drain → report → complete.
//! - [`shipper`] finds the shippers on the instance (filebeat alone or under Elastic Agent,
//!   the CloudWatch agent, Fluent Bit, Vector) and reads each one's own proof of delivery;
//!   filebeat's registry formats are in [`registry`], its disk queue in [`diskqueue`];
//! - [`backlog`] matches what a shipper has delivered to the files and says what is left;
//! - [`drain`] waits until nothing is left, over any shippers; [`check`] says whether that
//!   can be exact here;
//! - [`report`] writes the drain report, one JSON line per drain, which the shippers ship;
//! - [`agent`] notices the termination, holds the instance and completes the action.

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
