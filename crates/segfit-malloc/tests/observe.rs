//! The C extras for seeing the heap: `segfit_stats_json_fd` and `segfit_heap_json_fd` write valid
//! JSON that describes the blocks the program holds (checked with python3's json module).

mod common;

use common::{compile, link_segfit, run_with_timeout};
use std::process::Command;
use std::time::Duration;

#[test]
fn stats_and_heap_map_are_valid_json_describing_the_heap() {
    let exe = compile("observe.c", "observe", &link_segfit());
    let o = run_with_timeout(Command::new(exe), Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let check = r#"
import json, sys
lines = sys.stdin.read().splitlines()
stats = json.loads(lines[0])
spans = json.loads("\n".join(lines[1:]))
assert stats["heap_objects"] >= 1002, stats["heap_objects"]
assert stats["mallocs"] >= 1002
c48 = [c for c in stats["by_size"] if c["size"] == 48][0]
assert c48["mallocs"] >= 1000 and c48["out"] >= 1000, c48
assert any(s["kind"] == "large" and s["requested"] == 300000 for s in spans)
assert any(s["kind"] == "huge" and s["requested"] == 40 << 20 for s in spans)
small = sum(s["in_use"] for s in spans if s["kind"] == "small" and s["object_size"] == 48)
assert small >= 1000, small
print("ok", len(spans), "spans")
"#;
    let mut py = Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(out.as_bytes()).unwrap();
    let r = py.wait_with_output().unwrap();
    assert!(
        r.status.success(),
        "python3 rejected the output: {}\n{out}",
        String::from_utf8_lossy(&r.stderr)
    );
    println!("{}", String::from_utf8_lossy(&r.stdout));
}
