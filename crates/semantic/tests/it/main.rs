//! End-to-end tests: the real `semantic` binary on 127.0.0.1:0 with the default SmolLM2 model.

mod api;
mod bench;
mod clients;
mod coordination;
mod crash;
mod deploy;
mod disk;
mod durability;
mod encryption;
mod first_hour;
mod harness;
mod isa;
mod memory;
mod models;
mod offline;
mod openai;
mod ops;
mod overload;
mod python;
mod readme;
mod responses_sdk;
mod sdk;
mod server;
mod ui;
