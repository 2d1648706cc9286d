//! `stampede serve` as a child process of the test, sharing an in-test app's services, so that
//! a test may kill it (SIGKILL: nothing runs on the way out) and start it again.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use testkit::SharedServices;

use crate::helpers::TestApp;

pub const SECRET: &str = "crash-test-secret-of-enough-length";

/// A `stampede serve` child process, restartable with the same environment.
pub struct Process {
    env: Vec<(String, String)>,
    role: &'static str,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Process {
    pub fn start(env: Vec<(String, String)>, role: &'static str) -> Self {
        let mut process = Self {
            env,
            role,
            child: None,
            log: Default::default(),
        };
        process.restart();
        process
    }

    /// Starts the process and waits until it logs its address. Its environment comes after
    /// these defaults, so it may override them.
    pub fn restart(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .args(["serve", "--role", self.role])
            .env("STAMPEDE_JWT_SECRET", SECRET)
            // A few users place every order here: lift the per-user abuse limits.
            .env("STAMPEDE_ORDERS_MAX_OPEN", "1000")
            .env("STAMPEDE_RATE_ORDERS", "100000")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines_before = Vec::new();
        loop {
            let line = lines
                .next()
                .expect("the server logs before it exits")
                .unwrap();
            lines_before.push(line);
            if lines_before
                .last()
                .unwrap()
                .contains("listening on http://")
            {
                break;
            }
        }
        // Keep draining its output (into a file the failure message names) so it never blocks
        // on a full pipe.
        self.log = std::env::temp_dir().join(format!("stampede-crash-{}.log", child.id()));
        eprintln!("{} process log: {}", self.role, self.log.display());
        let mut file = std::fs::File::create(&self.log).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for line in lines_before.into_iter().chain(lines.map_while(Result::ok)) {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
            }
        });
        self.child = Some(child);
    }

    /// What the process has logged so far (since its last start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, in-flight batches are cut off.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment of a process that shares `app`'s database schema, cache prefix, bus and
/// topic prefix (`app` runs on `services` with the secret [`SECRET`]).
pub fn sharing(app: &TestApp, services: &SharedServices) -> Vec<(String, String)> {
    let settings = &app.state.settings;
    [
        ("STAMPEDE_BIND", "127.0.0.1:0".to_owned()),
        ("STAMPEDE_DATABASE_URL", services.database.clone()),
        (
            "STAMPEDE_DATABASE_SCHEMA",
            settings.database.schema.clone().unwrap(),
        ),
        ("STAMPEDE_CACHE_URL", services.cache.clone()),
        ("STAMPEDE_CACHE_PREFIX", settings.cache.prefix.clone()),
        ("STAMPEDE_BUS_URL", settings.bus.url.clone()),
        ("STAMPEDE_TOPIC_PREFIX", settings.topic_prefix.clone()),
        (
            "STAMPEDE_BUS_PARTITIONS",
            settings.bus.partitions.to_string(),
        ),
        ("STAMPEDE_BUS_POLL_INTERVAL_MS", "100".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
