//! The operator's file mode and CLI, end to end with the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dynoscope_tests::{bin, repo_root, wait_for};

const SHOP: &str = "apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: shop}
spec:
  env: staging
  formation: {web: {quantity: 2}, worker: {quantity: 1}}
  integrations: [{type: postgres}]
  overrides:
    worker: {apm: {enabled: true}}
";

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn operator() -> Command {
    Command::new(bin("dynoscope-operator"))
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

fn status(out: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(out.join("shop/status.yaml")).unwrap_or_default();
    serde_yaml::from_str(&text).unwrap_or(serde_yaml::Value::Null)
}

fn condition(status: &serde_yaml::Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_sequence()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

#[test]
fn watch_renders_updates_keeps_last_good_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, out) = (dir.path().join("manifests"), dir.path().join("out"));
    std::fs::create_dir_all(&manifests).unwrap();
    let _op = Operator(
        operator()
            .args(["watch", "--manifests"])
            .arg(&manifests)
            .arg("--out")
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let manifest = manifests.join("shop.yaml");
    let app = out.join("shop");
    let (web1, web2, worker1) = (
        app.join("web.1.yaml"),
        app.join("web.2.yaml"),
        app.join("worker.1.yaml"),
    );

    // Add a manifest: every dyno's file appears, the status is Ready.
    std::fs::write(&manifest, SHOP).unwrap();
    wait_for(Duration::from_secs(10), "rendered files", || {
        (web1.is_file()
            && web2.is_file()
            && worker1.is_file()
            && condition(&status(&out), "Ready").is_some())
        .then_some(())
    });
    let ready = condition(&status(&out), "Ready").unwrap();
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("True", "Rendered"),
        "{ready:?}"
    );
    assert!(ready.2.contains("web.1, web.2, worker.1"), "{ready:?}");
    assert_eq!(status(&out)["observedGeneration"], 1);
    let mode = std::fs::metadata(&web1).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let web1_config =
        dynoscope_crds::DynoConfig::from_yaml(&std::fs::read_to_string(&web1).unwrap(), "web.1")
            .unwrap();
    assert_eq!(web1_config.integrations.len(), 1, "postgres runs on web.1");
    assert!(web1_config.tags.contains(&"env:staging".to_owned()));
    let hashes = status(&out)["dynos"].clone();
    assert_eq!(
        hashes[0]["configHash"].as_str(),
        Some(web1_config.config_hash.as_str())
    );

    // Rewrite the manifest unchanged: nothing downstream is touched.
    let before = (
        inode(&web1),
        inode(&web2),
        inode(&worker1),
        inode(&app.join("status.yaml")),
    );
    std::fs::write(&manifest, SHOP).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        before,
        (
            inode(&web1),
            inode(&web2),
            inode(&worker1),
            inode(&app.join("status.yaml"))
        )
    );

    // Edit what only the worker uses: only worker.1.yaml is rewritten.
    let worker_before = std::fs::read_to_string(&worker1).unwrap();
    std::fs::write(
        &manifest,
        SHOP.replace("apm: {enabled: true}", "apm: {enabled: false}"),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "worker.1.yaml to change", || {
        (std::fs::read_to_string(&worker1).unwrap_or_default() != worker_before).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (before.0, before.1),
        (inode(&web1), inode(&web2)),
        "web dynos' files were rewritten"
    );
    assert_eq!(status(&out)["observedGeneration"], 2);

    // Break the YAML: the status says where, the files stay as they were.
    let kept = [&web1, &web2, &worker1].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&manifest, "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {name: shop\nspec: {}\n").unwrap();
    let invalid = wait_for(Duration::from_secs(10), "InvalidSpec", || {
        condition(&status(&out), "InvalidSpec").filter(|c| c.0 == "True")
    });
    assert!(
        invalid.2.contains("shop.yaml") && invalid.2.contains("line"),
        "{invalid:?}"
    );
    assert_eq!(condition(&status(&out), "Ready").unwrap().0, "False");
    assert_eq!(
        kept,
        [&web1, &web2, &worker1].map(|p| std::fs::read_to_string(p).unwrap())
    );

    // A semantic error names the field, and still keeps the files.
    std::fs::write(
        &manifest,
        SHOP.replace(
            "integrations: [{type: postgres}]",
            "integrations: [{type: postgres, dyno: web.9}]",
        ),
    )
    .unwrap();
    let invalid = wait_for(Duration::from_secs(10), "InvalidSpec for the field", || {
        condition(&status(&out), "InvalidSpec")
            .filter(|c| c.2.contains("spec.integrations[0].dyno"))
    });
    assert_eq!(invalid.1, "ValidationFailed");
    assert_eq!(
        kept,
        [&web1, &web2, &worker1].map(|p| std::fs::read_to_string(p).unwrap())
    );

    // Scale the worker away: its file goes, the others stay.
    std::fs::write(
        &manifest,
        SHOP.replace("worker: {quantity: 1}", "worker: {quantity: 0}"),
    )
    .unwrap();
    // The files change first and status.yaml follows: wait for both.
    wait_for(
        Duration::from_secs(10),
        "worker.1.yaml to go and Ready",
        || {
            let ready = condition(&status(&out), "Ready").is_some_and(|c| c.0 == "True");
            (!worker1.exists() && ready).then_some(())
        },
    );
    assert!(web1.is_file() && web2.is_file());

    // Delete the manifest: its rendered files go.
    std::fs::remove_file(&manifest).unwrap();
    wait_for(Duration::from_secs(10), "the app directory to go", || {
        (!app.exists()).then_some(())
    });
}

#[test]
fn watch_once_adopts_a_previous_run_and_removes_what_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, out) = (dir.path().join("m"), dir.path().join("o"));
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("shop.yml"), SHOP).unwrap();
    let once = |expect_ok: bool| {
        let status = operator()
            .args(["watch", "--once", "--manifests"])
            .arg(&manifests)
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert_eq!(status.success(), expect_ok);
    };
    once(true);
    assert!(out.join("shop/worker.1.yaml").is_file());
    // The operator was down while the manifest was deleted.
    std::fs::remove_file(manifests.join("shop.yml")).unwrap();
    once(true);
    assert!(!out.join("shop").exists());
}

#[test]
fn a_restarted_operator_removes_the_temp_files_of_an_interrupted_write() {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, out) = (dir.path().join("m"), dir.path().join("o"));
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("shop.yml"), SHOP).unwrap();
    let once = || {
        run(operator()
            .args(["watch", "--once", "--manifests"])
            .arg(&manifests)
            .arg("--out")
            .arg(&out))
    };
    assert!(once().0);
    // What `kill -9` in the middle of a write leaves: a temp file named for a
    // process that is gone (this one exited before the operator starts again).
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let left = [
        out.join(format!("shop/.web.1.yaml.tmp-{dead}")),
        out.join(format!(".status.yaml.tmp-{dead}")),
    ];
    for file in &left {
        std::fs::write(file, "apiVersion: half a fi").unwrap();
    }
    let (ok, _, stderr) = once();
    assert!(ok, "{stderr}");
    for file in &left {
        assert!(!file.exists(), "{} is still there", file.display());
        assert!(
            stderr.contains(&file.display().to_string()),
            "the removal of {} is not logged: {stderr}",
            file.display()
        );
    }
    assert!(out.join("shop/web.1.yaml").is_file());
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let output = cmd.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn apply_and_delete_answer_like_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let file = dir.path().join("shop.yaml");
    std::fs::write(&file, SHOP).unwrap();
    let apply = |file: &Path| {
        run(operator()
            .arg("apply")
            .arg("-f")
            .arg(file)
            .arg("--manifests")
            .arg(&manifests))
    };

    assert_eq!(
        apply(&file).1,
        "observabilityconfig.dynoscope.dev/shop created\n"
    );
    assert_eq!(
        apply(&file).1,
        "observabilityconfig.dynoscope.dev/shop unchanged\n"
    );
    std::fs::write(&file, SHOP.replace("staging", "production")).unwrap();
    assert_eq!(
        apply(&file).1,
        "observabilityconfig.dynoscope.dev/shop configured\n"
    );
    let stored = std::fs::read_to_string(manifests.join("shop.yaml")).unwrap();
    assert!(
        stored.contains("generation: 2") && stored.contains("production"),
        "{stored}"
    );

    // Several documents: each is applied.
    let two = format!(
        "{SHOP}---\n{}",
        SHOP.replace("name: shop", "name: blog")
            .replace("spec:\n", "spec:\n  app: blog\n")
    );
    std::fs::write(&file, &two).unwrap();
    let (ok, stdout, _) = apply(&file);
    assert!(ok);
    assert_eq!(stdout, "observabilityconfig.dynoscope.dev/shop configured\nobservabilityconfig.dynoscope.dev/blog created\n");

    // An invalid file is refused with every problem, and nothing is written.
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&manifests)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        names
    };
    let files_before = listing();
    let stored_before = std::fs::read_to_string(manifests.join("shop.yaml")).unwrap();
    let bad = SHOP.replace(
        "env: staging",
        "env: staging\n  apm: {port: 99999}\n  dogstatsd: {histogramPercentiles: [2]}",
    );
    std::fs::write(
        &file,
        format!("{bad}---\n{}", SHOP.replace("name: shop", "name: new")),
    )
    .unwrap();
    let (ok, stdout, stderr) = apply(&file);
    assert!(!ok && stdout.is_empty());
    assert!(
        stderr.contains("spec.apm.port")
            && stderr.contains("spec.dogstatsd.histogramPercentiles[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert_eq!(listing(), files_before);
    assert_eq!(
        std::fs::read_to_string(manifests.join("shop.yaml")).unwrap(),
        stored_before
    );

    // Delete.
    std::fs::write(&file, SHOP).unwrap();
    let delete = || {
        run(operator()
            .arg("delete")
            .arg("-f")
            .arg(&file)
            .arg("--manifests")
            .arg(&manifests))
    };
    assert_eq!(
        delete().1,
        "observabilityconfig.dynoscope.dev/shop deleted\n"
    );
    let (ok, _, stderr) = delete();
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
}

#[test]
fn render_and_validate_the_shop_example() {
    let example = repo_root().join("examples/shop/observability.yaml");
    let (ok, stdout, stderr) = run(operator().arg("validate").arg("-f").arg(&example));
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "observabilityconfig.dynoscope.dev/shop valid (3 dynos: web.1, web.2, worker.1)\n"
    );

    // The README's example: render one dyno, with the Procfile beside the manifest.
    let (ok, stdout, stderr) = run(operator()
        .arg("render")
        .arg("-f")
        .arg(&example)
        .args(["--dyno", "web.1"]));
    assert!(ok, "{stderr}");
    let config =
        dynoscope_crds::DynoConfig::from_yaml(stdout.trim_start_matches("---\n"), "stdout")
            .unwrap();
    assert_eq!(config.command.as_deref(), Some("python3 app.py"));
    assert_eq!(config.hostname, "shop.web.1");
    let names: Vec<_> = config
        .integrations
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["postgres", "redis"]);

    // --formation overrides the spec's quantities.
    let (ok, stdout, _) = run(operator()
        .arg("render")
        .arg("-f")
        .arg(&example)
        .args(["--formation", "web=1,worker=2"]));
    assert!(ok);
    let dynos: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("dyno: "))
        .collect();
    assert_eq!(dynos, ["web.1", "worker.1", "worker.2"]);

    // Validation failures exit 1 and list every problem.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        SHOP.replace(
            "env: staging",
            "env: staging\n  tags: ['a b']\n  sinks: [{type: datadog, apiKey: sekrit}]",
        ),
    )
    .unwrap();
    let (ok, _, stderr) = run(operator().arg("validate").arg("-f").arg(bad.path()));
    assert!(!ok);
    assert!(
        stderr.contains("spec.tags[0]") && stderr.contains("spec.sinks[0].apiKey"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("sekrit"),
        "a secret leaked into the error: {stderr}"
    );
}
