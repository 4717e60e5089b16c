//! Integration tests of both directory backends: the same scenarios run on
//! the embedded directory (two handles on one temp dir) and on a real etcd
//! started per test.

mod config;
mod embedded;
mod etcd;
mod etcd_server;
mod scenarios;
