"""The recipes in cluster/ that cannot run here (cloud launcher, KubeRay, Kubernetes) are at least well formed:
checked against Ray's own launcher schema, and their spec and paths against the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ray
import yaml

from search.driver.checks import parse_spec

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def test_launcher_config_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((CLUSTER / "ray-cluster-aws.yaml").read_text()))
    validate_config(config)
    types = config["available_node_types"]
    gpu = [t for t in types.values() if t["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu and all("gpu" in t["docker"]["worker_image"] for t in gpu)
    assert ray.__version__ in config["docker"]["image"]
    for cmd in (*config["head_start_ray_commands"], *config["worker_start_ray_commands"]):
        assert "ray stop" == cmd or "RAY_AUTH_MODE=token ray start" in cmd


def test_rayjob_runs_emule_search_on_its_spec():
    config_map, job = yaml.safe_load_all((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["emule", "search"] and entry[entry.index("--address") + 1] == "auto"
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]["template"]["spec"]
    mount = head["containers"][0]["volumeMounts"][0]
    assert entry[2] == f"{mount['mountPath']}/spec.yaml"
    assert head["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
    gpus = [g for g in cluster["workerGroupSpecs"]
            if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpus
    spec = parse_spec(yaml.safe_load(config_map["data"]["spec.yaml"]))  # the shipped spec is valid
    assert spec.storage_uri().startswith("s3://") and spec.tracking.uri.startswith("http://")
    assert spec.search.gpus_per_trial > 0


def test_mlflow_recipes():
    deployment, service = yaml.safe_load_all((CLUSTER / "mlflow-k8s.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1].endswith("cluster/mlflow_server.sh")
    assert "--allowed-hosts" in container["args"]
    assert service["spec"]["ports"][0]["port"] == 5000
    script = CLUSTER / "mlflow_server.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    missing = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode != 0 and "EMULE_MLFLOW_DB" in missing.stderr
    text = script.read_text()
    assert "--workers 1" in text and "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in text


def test_local_scripts_answer_help():
    for script in ("local_cluster.py", "local_tracking.py"):
        done = subprocess.run([sys.executable, str(CLUSTER / script), "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "127.0.0.1" in done.stdout


def test_local_tracking_refuses_a_timeout_that_is_not_positive(tmp_path):
    done = subprocess.run([sys.executable, str(CLUSTER / "local_tracking.py"), "start", "--dir", str(tmp_path),
                           "--timeout", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "--timeout must be a positive number of seconds, got 0" in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything is set up
