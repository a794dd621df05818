//! The built binary run the way the container image and deploy/kubernetes run it: as the
//! image's non-root user (uid 10001, no capabilities, no_new_privs), with an environment that
//! holds exactly the variables the manifests give a pod (the ConfigMap and the Secret, nothing
//! else: no PATH, no HOME), from a working directory with no `config/`, with the commands and
//! probes written in the Dockerfile, docker-compose.yml and the manifests. The manifests are
//! read here, so a change there that breaks the binary breaks this test.
//!
//! The YAML is read line by line (flat `KEY: "value"` maps and JSON-style `[...]` lists, which
//! is how those files are written) rather than with a YAML crate: the test needs a handful of
//! values, and a reader this small fails loudly when the layout changes.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::TestDb;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_webhookd");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// The flat map under a top-level `section:` line (`data:`, `stringData:`), values unquoted.
fn yaml_map(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        if inside {
            let (key, value) = line
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("not `KEY: value` under {section}: {line:?}"));
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            map.insert(key.to_string(), value.to_string());
        }
    }
    assert!(!map.is_empty(), "no `{section}:` map found");
    map
}

/// Every value of `key: value` lines, in order, with any indentation.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix(prefix.as_str()))
        .map(|value| value.trim().to_string())
        .collect()
}

/// The single value of `key:` in `text`.
fn yaml_value(text: &str, key: &str) -> String {
    let values = yaml_values(text, key);
    assert_eq!(values.len(), 1, "expected one `{key}:`, found {values:?}");
    values[0].clone()
}

/// A JSON-style list (`["webhookd", "probe"]`).
fn flow_list(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|e| panic!("not a [\"...\"] list: {value}: {e}"))
}

fn seconds(duration: &str) -> u64 {
    humantime::parse_duration(duration)
        .unwrap_or_else(|e| panic!("{duration:?}: {e}"))
        .as_secs()
}

/// A pod manifest: the container's args, the grace period, the user it runs as, and that its
/// environment comes from the ConfigMap and the Secret and from nothing else.
struct PodSpec {
    args: Vec<String>,
    grace: Duration,
    uid: u32,
}

fn pod_spec(file: &str) -> PodSpec {
    let text = read(&format!("deploy/kubernetes/{file}"));
    let refs: Vec<String> = text
        .lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].trim_end().ends_with("Ref:"))
        .map(|w| format!("{} {}", w[0].trim(), w[1].trim()))
        .collect();
    assert_eq!(
        refs,
        [
            "- configMapRef: name: webhookd-config",
            "- secretRef: name: webhookd-secrets"
        ],
        "{file}: envFrom must be the ConfigMap then the Secret"
    );
    assert!(
        !text.lines().any(|l| l.trim() == "env:"),
        "{file} sets variables of its own; this test would not see them"
    );
    let grace = yaml_values(&text, "terminationGracePeriodSeconds")
        .first()
        .map_or(30, |v| v.parse().unwrap()); // Kubernetes' default
    PodSpec {
        args: flow_list(&yaml_value(&text, "args")),
        grace: Duration::from_secs(grace),
        uid: yaml_value(&text, "runAsUser").parse().unwrap(),
    }
}

/// The environment of a pod: ConfigMap and Secret, with the values that must differ on a test
/// machine replaced. Replacing a key the manifests do not set is refused, so the test never
/// runs with more than they give.
fn pod_env(replace: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut env = yaml_map(&read("deploy/kubernetes/configmap.yaml"), "data");
    let secret = yaml_map(&read("deploy/kubernetes/secret.yaml"), "stringData");
    for (key, value) in secret {
        assert!(
            env.insert(key.clone(), value).is_none(),
            "{key} is in both the ConfigMap and the Secret"
        );
    }
    for (key, value) in replace {
        assert!(env.contains_key(*key), "{key} is not set by the manifests");
        env.insert(key.to_string(), value.clone());
    }
    env
}

/// The binary as the image has it: copied out of the build into a directory of its own (a
/// checkout under /root would not be reachable for uid 10001), and an empty working directory
/// that the user cannot write to, with no `config/` in it.
struct Image {
    dir: PathBuf,
    binary: PathBuf,
    workdir: PathBuf,
    uid: u32,
}

impl Image {
    fn new(uid: u32) -> Image {
        let dir =
            std::env::temp_dir().join(format!("webhookd-image-{}", uuid::Uuid::new_v4().simple()));
        let bin_dir = dir.join("usr/local/bin");
        let workdir = dir.join("workdir");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::create_dir_all(&workdir).unwrap();
        for path in [&dir, &bin_dir, &workdir] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let binary = bin_dir.join("webhookd");
        std::fs::copy(BIN, &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        Image {
            dir,
            binary,
            workdir,
            uid,
        }
    }

    /// `args` as the container runs them: `webhookd` is the entrypoint, resolved here to the
    /// copied binary; as root, setpriv drops to the pod's uid and gid with no supplementary
    /// groups, no capabilities (drop: ALL) and no_new_privs (allowPrivilegeEscalation: false).
    fn command(&self, args: &[String], env: &BTreeMap<String, String>) -> Command {
        let args = match args.split_first() {
            Some((first, rest)) if first == "webhookd" => rest,
            _ => args,
        };
        let mut command = if running_as_root() {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.uid))
                .args([
                    "--clear-groups",
                    "--no-new-privs",
                    "--bounding-set=-all",
                    "--",
                ])
                .arg(&self.binary);
            c
        } else {
            Command::new(&self.binary)
        };
        command
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(&self.workdir)
            .stdin(Stdio::null());
        command
    }

    /// Runs a short command (migrate, a probe) to completion.
    async fn run(&self, args: &[String], env: &BTreeMap<String, String>) -> Output {
        let mut command = self.command(args, env);
        tokio::task::spawn_blocking(move || command.output().expect("the command starts"))
            .await
            .unwrap()
    }

    /// Starts a long-running container process; its stderr (the JSON log) goes to a file.
    fn start(&self, name: &str, args: &[String], env: &BTreeMap<String, String>) -> Container {
        let log = self.dir.join(format!("{name}.log"));
        let child = self
            .command(args, env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the container process starts");
        Container {
            name: name.to_string(),
            child,
            log,
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    status_field(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "Uid",
    )
    .split_whitespace()
    .next()
        == Some("0")
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
        .trim()
        .to_string()
}

struct Container {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Container {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's real, effective, saved and filesystem uid, and its capabilities, as the
    /// kernel sees them (setpriv execs, so the pid is webhookd's own).
    fn credentials(&self) -> (String, String, String) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_else(|e| panic!("{} is not running: {e}\n{}", self.name, self.logs()));
        assert_eq!(status_field(&status, "Name"), "webhookd", "{status}");
        (
            status_field(&status, "Uid"),
            status_field(&status, "CapEff"),
            status_field(&status, "NoNewPrivs"),
        )
    }

    /// Sends SIGTERM, as the kubelet does, and waits up to `grace` for the exit code.
    async fn terminate(&mut self, grace: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        while started.elapsed() < grace {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (None, started.elapsed())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A health-check command with the API's port 8080 moved to the test's port.
fn on_port(command: &[String], port: u16) -> Vec<String> {
    command
        .iter()
        .map(|a| a.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")))
        .collect()
}

/// Runs `probe` until it succeeds (a readiness probe's job), up to `timeout`.
async fn until_ready(
    image: &Image,
    probe: &[String],
    env: &BTreeMap<String, String>,
    container: &Container,
    timeout: Duration,
) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        let output = image.run(probe, env).await;
        if output.status.success() {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "{probe:?} still failing after {timeout:?}: {}\n{} log:\n{}",
            text(&output.stderr),
            container.name,
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_manifests_set_only_settings_webhookd_reads_and_outlast_its_shutdown_timeout() {
    let env = pod_env(&[]);
    let known: Vec<String> = webhookd::config::KEYS
        .iter()
        .map(|k| k.to_ascii_uppercase())
        .collect();
    for key in env.keys() {
        assert!(
            known.contains(key),
            "{key} in the ConfigMap or Secret is not a webhookd setting: it would be ignored"
        );
    }
    for key in ["DATABASE_URL", "API_TOKEN", "SECRET_KEYS"] {
        assert!(
            !yaml_map(&read("deploy/kubernetes/configmap.yaml"), "data").contains_key(key),
            "{key} is a secret and belongs in secret.yaml"
        );
    }
    let shutdown = Duration::from_secs(seconds(&env["SHUTDOWN_TIMEOUT"]));
    let serve = pod_spec("serve-deployment.yaml");
    let work = pod_spec("work-deployment.yaml");
    // serve sleeps in preStop before it is even sent SIGTERM.
    let pre_stop = read("deploy/kubernetes/serve-deployment.yaml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: [\"sleep\", \""))
        .map_or(0, |rest| {
            rest.trim_end_matches("\"]")
                .parse::<u64>()
                .expect("preStop sleep seconds")
        });
    assert!(
        serve.grace > shutdown + Duration::from_secs(pre_stop),
        "serve: terminationGracePeriodSeconds {:?} must exceed preStop {pre_stop}s + SHUTDOWN_TIMEOUT {shutdown:?}",
        serve.grace
    );
    assert!(
        work.grace > shutdown,
        "work: terminationGracePeriodSeconds {:?} must exceed SHUTDOWN_TIMEOUT {shutdown:?}",
        work.grace
    );
    // The image's user and the manifests' runAsUser are one and the same.
    let dockerfile = read("Dockerfile");
    for spec in [&serve, &work, &pod_spec("migrate-job.yaml")] {
        assert_eq!(spec.uid, 10001);
        assert!(dockerfile.contains(&format!("USER {0}:{0}", spec.uid)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_migrates_serves_delivers_and_stops_cleanly_as_the_manifests_run_it() {
    let serve_spec = pod_spec("serve-deployment.yaml");
    let work_spec = pod_spec("work-deployment.yaml");
    let migrate_spec = pod_spec("migrate-job.yaml");
    let image = Image::new(serve_spec.uid);

    // A database that does not exist yet: `migrate` creates it, as on a first install.
    let name = format!("webhookd_container_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&common::base_url()).unwrap();
    url.set_path(&format!("/{name}"));
    let db = TestDb {
        name,
        url: url.to_string(),
    };
    let receiver = Receiver::start().await;
    let port = free_port();
    let token = format!("test-token-{}", uuid::Uuid::new_v4().simple());
    let env = pod_env(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_TOKEN", token.clone()),
        // The pod listens on 0.0.0.0:8080; here, a free loopback port.
        ("SERVER_ADDR", format!("127.0.0.1:{port}")),
        // The receiver is on loopback, which production settings rightly refuse.
        ("OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32".to_string()),
    ]);

    // The migrate Job, twice: the second finds nothing to do (a re-run Job is harmless).
    let first = image.run(&migrate_spec.args, &env).await;
    assert!(
        first.status.success(),
        "migrate failed: {}",
        text(&first.stderr)
    );
    assert!(text(&first.stdout).contains("applied "), "{first:?}");
    let again = image.run(&migrate_spec.args, &env).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), "database is up to date");

    let mut serve = image.start("serve", &serve_spec.args, &env);
    let mut work = image.start("work", &work_spec.args, &env);

    // Ready by the image's own HEALTHCHECK, then by every webhookd health check in
    // docker-compose.yml and by the work Deployment's readiness exec.
    let healthcheck_line = read("Dockerfile")
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD [\"webhookd\", \"probe\""))
        .map(|rest| format!("[\"webhookd\", \"probe\"{rest}"))
        .expect("Dockerfile has a HEALTHCHECK CMD [\"webhookd\", \"probe\", ...]");
    let healthcheck = on_port(&flow_list(&healthcheck_line), port);
    let ready = until_ready(&image, &healthcheck, &env, &serve, Duration::from_secs(30)).await;
    assert!(text(&ready.stdout).starts_with("ok: GET "), "{ready:?}");
    let work_readiness = flow_list(&yaml_value(
        &read("deploy/kubernetes/work-deployment.yaml"),
        "command",
    ));
    assert_eq!(work_readiness[..3], ["webhookd", "probe", "--database"]);
    until_ready(
        &image,
        &work_readiness,
        &env,
        &work,
        Duration::from_secs(30),
    )
    .await;
    let compose_checks: Vec<Vec<String>> = yaml_values(&read("docker-compose.yml"), "test")
        .iter()
        .map(|v| flow_list(v))
        .filter(|c| c.get(1).map(String::as_str) == Some("webhookd"))
        .map(|c| on_port(&c[1..], port))
        .collect();
    assert_eq!(compose_checks.len(), 2, "serve and work health checks");
    for check in &compose_checks {
        let output = image.run(check, &env).await;
        assert!(output.status.success(), "{check:?}: {output:?}");
    }

    // Really not root, with nothing to escalate to.
    for container in [&serve, &work] {
        let (uid, cap_eff, no_new_privs) = container.credentials();
        assert!(
            !uid.starts_with('0'),
            "{} runs as root: Uid {uid}",
            container.name
        );
        assert_eq!(
            cap_eff, "0000000000000000",
            "{} has capabilities",
            container.name
        );
        if running_as_root() {
            // Real, effective, saved and filesystem uid: all the pods' runAsUser.
            let expected = vec![serve_spec.uid.to_string(); 4];
            assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), expected);
            assert_eq!(no_new_privs, "1");
        }
    }

    // The API token from the Secret is in force.
    let http = common::http_client();
    let api = format!("http://127.0.0.1:{port}");
    let unauthorised = http
        .get(format!("{api}/webhook-configs"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{api}{path}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        async move {
            let response = request.send().await.expect("the API answers");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&body).unwrap_or(Value::Null))
        }
    };
    let (status, config) = call(
        reqwest::Method::POST,
        "/webhook-configs",
        Some(
            json!({"name": "partner", "postback_url": receiver.url("/ok/container?uid={user_id}"),
                    "chargeback_url": receiver.url("/slow/5000/container?uid={user_id}")}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{config}");

    // `work` delivers what `serve` accepted.
    let credit = json!({"event_type": "+credit", "event_id": "c-1", "config_id": config["id"],
                        "url_params": {"user_id": "u1"}});
    let (status, entry) = call(reqwest::Method::POST, "/webhooks", Some(credit)).await;
    assert_eq!(status, 201, "{entry}");
    let delivered = receiver
        .wait_for("/ok/container", 1, Duration::from_secs(20))
        .await;
    assert_eq!(delivered[0].query, "uid=u1");
    assert_eq!(
        delivered[0].header("X-Webhook-Id"),
        entry["queue_id"].as_str().unwrap()
    );
    let client = db.client().await;
    db.wait_count(
        "SELECT count(*) FROM webhook_queue WHERE status = 'completed'",
        1,
        Duration::from_secs(10),
        "the row completed",
    )
    .await;

    // SIGTERM while a call is in flight (the partner takes 5 s, so the signal is sent while
    // the call is open even on a loaded machine): the call finishes, its outcome is written,
    // and both processes exit 0 within their pods' grace periods.
    let debit = json!({"event_type": "-debit", "event_id": "c-2", "config_id": config["id"],
                       "url_params": {"user_id": "u2"}});
    let (status, slow) = call(reqwest::Method::POST, "/webhooks", Some(debit)).await;
    assert_eq!(status, 201, "{slow}");
    receiver
        .wait_for("/slow/5000/container", 1, Duration::from_secs(20))
        .await;
    let (work_exit, work_took) = work.terminate(work_spec.grace).await;
    let (serve_exit, serve_took) = serve.terminate(serve_spec.grace).await;
    assert_eq!(
        work_exit,
        Some(0),
        "work did not exit 0 within {:?} of SIGTERM:\n{}",
        work_spec.grace,
        work.logs()
    );
    assert_eq!(
        serve_exit,
        Some(0),
        "serve did not exit 0 within {:?} of SIGTERM:\n{}",
        serve_spec.grace,
        serve.logs()
    );
    // The call in flight outlived the signal: the worker logged its delivery after it began
    // to shut down, so it waited for the call rather than dropping it.
    let work_logs = work.logs();
    let stopping = work_logs
        .find("shutting down workers")
        .unwrap_or_else(|| panic!("work did not begin a graceful stop:\n{work_logs}"));
    let queue_id = slow["queue_id"].as_str().unwrap();
    assert!(
        work_logs[stopping..]
            .lines()
            .any(|l| l.contains("\"delivered\"") && l.contains(queue_id)),
        "work exited after {work_took:?} without finishing the call in flight:\n{work_logs}"
    );
    let row = client
        .query_one(
            "SELECT status, retry_0_http_status FROM webhook_queue WHERE event_id = 'c-2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(200));
    assert!(work.logs().contains("workers stopped"), "{}", work.logs());
    assert!(serve_took < serve_spec.grace);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_needs_no_settings_and_says_why_in_one_line() {
    let receiver = Receiver::start().await;
    let image = Image::new(10001);
    // Settings that every other command refuses, with a password that must not be printed.
    let broken: BTreeMap<String, String> = [
        ("WORKER_COUNT", "0"),
        (
            "DATABASE_URL",
            "postgres://webhookd:hunter2@127.0.0.1:1/webhookd",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let probe = |url: &str, timeout: &str| -> Vec<String> {
        ["probe", "--url", url, "--timeout", timeout]
            .map(str::to_string)
            .to_vec()
    };
    let one_line_error = |output: &Output| -> String {
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("webhookd: error: unhealthy: "),
            "{stderr}"
        );
        stderr
    };

    let ok = image
        .run(&probe(&receiver.url("/ok/probe"), "2s"), &broken)
        .await;
    assert!(ok.status.success(), "{ok:?}");
    assert!(text(&ok.stdout).starts_with("ok: GET "), "{ok:?}");

    let unavailable = image
        .run(&probe(&receiver.url("/status/503/probe"), "2s"), &broken)
        .await;
    assert!(one_line_error(&unavailable).contains("answered 503 Service Unavailable: status 503"));

    let refused = image
        .run(
            &probe(&format!("http://127.0.0.1:{}/health", free_port()), "2s"),
            &broken,
        )
        .await;
    assert!(one_line_error(&refused).contains("Connection refused"));

    // The partner would answer after a minute; a probe that gives up at its 300 ms timeout
    // is back long before that, on any machine.
    let started = Instant::now();
    let slow = image
        .run(&probe(&receiver.url("/slow/60000/probe"), "300ms"), &broken)
        .await;
    assert!(one_line_error(&slow).contains("no answer within 300ms"));
    assert!(started.elapsed() < Duration::from_secs(30));

    // --database does read the database settings, and fails without showing the password.
    let database = image
        .run(
            &["probe", "--database"].map(str::to_string),
            &[("DATABASE_URL".to_string(), broken["DATABASE_URL"].clone())].into(),
        )
        .await;
    let stderr = one_line_error(&database);
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
