"""The checks of scripts/check-deploy that need a parser: run by it with its virtualenv's Python
(PyYAML comes with kubernetes-validate, the Containerfile parser is PyPI's `dockerfile`).

  check_deploy.py containerfile FILE
  check_deploy.py manifests BOXOFFICE SECRETS.yaml RENDERED.yaml...
  check_deploy.py observability OUT_DIR
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = []


def problem(text):
    PROBLEMS.append(text)


def finish(what):
    if PROBLEMS:
        for p in PROBLEMS:
            print(f"check-deploy: {p}", file=sys.stderr)
        sys.exit(f"check-deploy: {what}: {len(PROBLEMS)} problem(s)")


# --- Containerfile ------------------------------------------------------------------------------


def containerfile(path):
    import dockerfile

    commands = dockerfile.parse_file(path)
    stages = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    if len(stages) < 2:
        problem(f"{path}: a multi-stage build has at least two FROM, found {len(stages)}")
        finish("Containerfile")
    build, runtime = commands[stages[0]:stages[-1]], commands[stages[-1]:]
    runs = " ".join(" ".join(c.value) for c in build if c.cmd == "RUN")
    if "cargo build --release --locked --bin boxoffice" not in runs:
        problem(f"{path}: the build stage does not run `cargo build --release --locked --bin boxoffice`")
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]):
        problem(f"{path}: the runtime stage's last USER is not a fixed non-root uid:gid ({users})")
    entry = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    if not entry or not entry[-1].json or list(entry[-1].value) != ["boxoffice"]:
        problem(f'{path}: the runtime stage has no ENTRYPOINT ["boxoffice"]')
    copies = [c for c in runtime if c.cmd == "COPY"]
    if not copies or not all(any(f.startswith("--from=") for f in c.flags) for c in copies):
        problem(f"{path}: the runtime stage copies anything but the build stage's binary")
    if not any("/var/lib/boxoffice" in " ".join(c.value) for c in runtime if c.cmd == "VOLUME"):
        problem(f"{path}: no VOLUME /var/lib/boxoffice")
    exposed = {v for c in runtime if c.cmd == "EXPOSE" for v in c.value}
    for port in ("7001", "7100", "8080", "9100"):
        if port not in exposed:
            problem(f"{path}: port {port} is not exposed")
    finish("Containerfile")


# --- Kubernetes manifests -----------------------------------------------------------------------

HELP_CACHE = {}


def flags_of(binary, command):
    """The long flags `boxoffice COMMAND --help` lists."""
    key = tuple(command)
    if key not in HELP_CACHE:
        out = subprocess.run([binary, *command, "--help"], capture_output=True, text=True)
        if out.returncode != 0:
            problem(f"`boxoffice {' '.join(command)}` is not a command: {out.stderr.strip()}")
            HELP_CACHE[key] = set()
        else:
            HELP_CACHE[key] = set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", out.stdout, re.M))
    return HELP_CACHE[key]


def check_flags(binary, command, flags, where):
    known = flags_of(binary, command)
    for flag in flags:
        if known and flag not in known:
            problem(f"{where}: `boxoffice {' '.join(command)}` has no flag {flag}")


FLAG = re.compile(r"^(--[a-z0-9-]+)")
SUBCOMMANDS = {"cluster", "certs", "backup", "search"}


def command_words(tokens):
    """`boxoffice cluster add-node --id …` → (["cluster", "add-node"], the tokens after)."""
    words = []
    for i, t in enumerate(tokens):
        if t.startswith("-") or t.startswith("$") or "=" in t:
            return words, tokens[i:]
        words.append(t)
        if len(words) == (2 if words[0] in SUBCOMMANDS else 1):
            return words, tokens[i + 1:]
    return words, []


def script_invocations(text):
    """Each `boxoffice …` command line of a shell script (continuations joined), with the flags
    of the shell variables it expands."""
    text = text.replace("\\\n", " ")
    # Here-documents are text (usage messages), not commands.
    text = re.sub(r"<<-?'?(\w+)'?\n.*?\n\1\n", "\n", text, flags=re.S)
    variables = {}
    for line in text.splitlines():
        m = re.match(r'^\s*([A-Z_]+)="([^"]*)"', line)
        if m:
            variables[m.group(1)] = m.group(2)
    for line in text.splitlines():
        code = line.split(" #", 1)[0]
        if code.lstrip().startswith("#"):
            continue
        for m in re.finditer(r'(?:^|[\s;(&|])(?:exec\s+)?(?:"\$BIN"|\$BIN|boxoffice)\s+([^;|&]*)', code):
            if code[: m.start()].count('"') % 2 == 1:
                continue  # inside a string: a message naming a command, not running it
            try:
                tokens = shlex.split(m.group(1), posix=True)
            except ValueError:
                tokens = m.group(1).split()
            words, rest = command_words(tokens)
            if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
                continue
            expanded = []
            for t in rest:
                v = re.fullmatch(r"\$\{?([A-Z_]+)\}?", t)
                expanded.extend(variables.get(v.group(1), "").split() if v else [t])
            yield words, [FLAG.match(t).group(1) for t in expanded if FLAG.match(t)]


def containers_of(doc):
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template")
    if not template:
        return None, []
    pod = template.get("spec", {})
    return pod, pod.get("initContainers", []) + pod.get("containers", [])


def manifests(binary, secrets_file, rendered):
    secret_names = {d["metadata"]["name"] for d in yaml.safe_load_all(Path(secrets_file).read_text()) if d}
    # Made by hand, as the README says: Stripe's keys, the Ingress's certificate.
    secret_names |= {"boxoffice-stripe", "boxoffice-api-https"}
    for path in rendered:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            where = f"{Path(path).name}: {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "Ingress":
                for tls in doc["spec"].get("tls", []):
                    if tls["secretName"] not in secret_names:
                        problem(f"{where}: Secret {tls['secretName']} is made nowhere")
            pod, containers = containers_of(doc)
            if pod is None:
                continue
            check_pod(where, pod, containers, secret_names, binary)
    for script in sorted((ROOT / "deploy/k8s/base/scripts").glob("*.sh")) + [ROOT / "deploy/k8s/make-secrets"]:
        for words, flags in script_invocations(script.read_text()):
            check_flags(binary, words, flags, script.relative_to(ROOT))
    finish("manifests")


def check_pod(where, pod, containers, secret_names, binary):
    pod_security = pod.get("securityContext", {})
    if not pod_security.get("runAsNonRoot"):
        problem(f"{where}: the pod does not set runAsNonRoot")
    for volume in pod.get("volumes", []):
        secret = volume.get("secret")
        if secret is None:
            continue
        if secret["secretName"] not in secret_names:
            problem(f"{where}: Secret {secret['secretName']} is made nowhere (deploy/k8s/make-secrets)")
        mode = secret.get("defaultMode", 0o644)
        if mode & 0o037:
            problem(f"{where}: Secret volume {volume['name']} has mode {mode:o}; 0440 or stricter")
    for c in containers:
        name = f"{where} container {c['name']}"
        security = c.get("securityContext", {})
        if not security.get("readOnlyRootFilesystem"):
            problem(f"{name}: the root file system is writable")
        if security.get("allowPrivilegeEscalation") is not False:
            problem(f"{name}: allowPrivilegeEscalation is not false")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(f"{name}: capabilities are not all dropped")
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                problem(f"{name}: no {kind} of cpu and memory")
        serves = c.get("ports") and "Job" not in where
        if serves and not (c.get("readinessProbe") and c.get("livenessProbe")):
            problem(f"{name}: a server without readiness and liveness probes")
        args = c.get("args") or []
        if args:
            words, rest = command_words(args)
            check_flags(binary, words, [FLAG.match(a).group(1) for a in rest if FLAG.match(a)], name)


# --- Prometheus and Grafana ---------------------------------------------------------------------

OBS = ROOT / "deploy/observability"
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
METRIC = re.compile(r"(?:boxoffice|api|http)_[a-z0-9_]+")


def metrics_in(expr):
    """The metric names a query reads (recording rules' names, with a colon, are not metrics)."""
    return [t for t in IDENTIFIER.findall(expr) if METRIC.fullmatch(t)]
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def dashboard_queries():
    dashboard = json.loads((OBS / "grafana/boxoffice.json").read_text())
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                queries.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    return queries


def rule_queries():
    out = []
    for path in sorted((OBS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("alert") or rule.get("record"), rule["expr"]))
    return out


def exported_by_code():
    """Every string literal of the Rust sources that looks like a metric name."""
    names = set()
    for crate in ("api", "node", "indexer", "raft-store", "boxoffice/src"):
        for path in (ROOT / crate).rglob("*.rs"):
            names.update(re.findall(r'"((?:boxoffice|api|http)_[a-z0-9_]+)"', path.read_text()))
    return names


def observability(out_dir):
    out_dir = Path(out_dir)
    # Debian's Prometheus is built without Kubernetes service discovery: check the rest of the
    # Kubernetes scrape config with the discovery swapped for static targets.
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is None:
            problem(f"prometheus.yml: job {job['job_name']} does not discover pods")
        job["static_configs"] = [{"targets": ["10.0.0.1:7001"]}]
    (out_dir / "prometheus-k8s").mkdir(parents=True, exist_ok=True)
    (out_dir / "prometheus-k8s/prometheus.yml").write_text(yaml.safe_dump(config))
    (out_dir / "prometheus-k8s/rules").mkdir(exist_ok=True)
    for rules in (OBS / "rules").glob("*.yml"):
        (out_dir / "prometheus-k8s/rules" / rules.name).write_text(rules.read_text())
    run(["promtool", "check", "config", str(out_dir / "prometheus-k8s/prometheus.yml")], "prometheus.yml")
    # Every dashboard query parses: promtool checks them as recording rules.
    queries = dashboard_queries()
    as_rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
    (out_dir / "dashboard-queries.yml").write_text(yaml.safe_dump(as_rules))
    run(["promtool", "check", "rules", str(out_dir / "dashboard-queries.yml")], "the dashboard's queries")
    # Every metric named is one the code exports.
    exported = exported_by_code()
    for where, expr in queries + rule_queries():
        for name in metrics_in(expr):
            base = HISTOGRAM_SUFFIX.sub("", name)
            if name not in exported and base not in exported:
                problem(f"{where}: {name} is exported by no code (`{expr.strip()}`)")
    print(f"dashboard: {len(queries)} queries; rules and dashboard name "
          f"{len({m for _, e in queries + rule_queries() for m in metrics_in(e)})} metrics, all exported")
    finish("observability")


def run(command, what):
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        problem(f"{what}: {' '.join(command)} failed:\n{out.stdout}{out.stderr}")


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "containerfile":
        containerfile(*args)
    elif kind == "manifests":
        manifests(args[0], args[1], args[2:])
    elif kind == "observability":
        observability(*args)
    else:
        sys.exit(f"unknown check {kind}")
