"""The cluster files agree with KubeRay, with each other and with the code: the RayJob and the
volume claim against the field names and types of the CRDs they are applied to, and the
Dockerfile, jobs/runtime_env.yaml, constraints.txt, pyproject.toml and the CLI on versions,
paths, excludes and resources."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

# -- the fields of KubeRay's RayJob that this project uses ---------------------------------
# Written from ray-project/kuberay ray-operator/config/crd/bases/ray.io_rayjobs.yaml (v1;
# the pod template is Kubernetes' PodTemplateSpec as embedded there). A field outside this
# subset fails the test: look it up in the CRD and add it here with its type.
S, INT, N, B, Q = "string", "integer", "number", "boolean", "quantity"
_NUM = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY = re.compile(rf"^(\+|-)?{_NUM}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUM}))?$")  # the CRD's pattern


def obj(required=(), **fields):
    return {"fields": fields, "required": tuple(required)}


def mapof(t):
    return {"map": t}


def listof(t):
    return {"list": t}


def enum(*values):
    return {"enum": values}


RESOURCES = obj(limits=mapof(Q), requests=mapof(Q))
CONTAINER = obj(["name"], name=S, image=S, imagePullPolicy=S, command=listof(S), args=listof(S),
                env=listof(obj(["name"], name=S, value=S)), resources=RESOURCES,
                volumeMounts=listof(obj(["mountPath", "name"], name=S, mountPath=S, readOnly=B, subPath=S)))
POD_TEMPLATE = obj(
    metadata=obj(labels=mapof(S), annotations=mapof(S)),
    spec=obj(["containers"], containers=listof(CONTAINER), serviceAccountName=S, nodeSelector=mapof(S),
             tolerations=listof(obj(key=S, operator=S, value=S, effect=S, tolerationSeconds=INT)),
             volumes=listof(obj(["name"], name=S, persistentVolumeClaim=obj(["claimName"], claimName=S,
                                                                           readOnly=B)))))
RAYJOB = obj(
    ["apiVersion", "kind", "metadata", "spec"], apiVersion=enum("ray.io/v1"), kind=enum("RayJob"),
    metadata=obj(["name"], name=S, namespace=S, labels=mapof(S), annotations=mapof(S)),
    spec=obj(
        entrypoint=S, runtimeEnvYAML=S, shutdownAfterJobFinishes=B, ttlSecondsAfterFinished=INT, backoffLimit=INT,
        activeDeadlineSeconds=INT, entrypointNumCpus=N, entrypointNumGpus=N, suspend=B,
        submissionMode=enum("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"),
        submitterPodTemplate=POD_TEMPLATE,
        rayClusterSpec=obj(
            ["headGroupSpec"], rayVersion=S, enableInTreeAutoscaling=B,
            autoscalerOptions=obj(upscalingMode=enum("Default", "Aggressive", "Conservative"),
                                  idleTimeoutSeconds=INT, image=S, imagePullPolicy=S, resources=RESOURCES),
            headGroupSpec=obj(["template"], rayStartParams=mapof(S), serviceType=S, template=POD_TEMPLATE),
            workerGroupSpecs=listof(obj(["groupName", "maxReplicas", "minReplicas", "template"], groupName=S,
                                        replicas=INT, minReplicas=INT, maxReplicas=INT, idleTimeoutSeconds=INT,
                                        rayStartParams=mapof(S), template=POD_TEMPLATE)))))
# Kubernetes core/v1 PersistentVolumeClaim, the fields used.
PVC = obj(["apiVersion", "kind", "metadata", "spec"], apiVersion=enum("v1"), kind=enum("PersistentVolumeClaim"),
          metadata=obj(["name"], name=S, namespace=S, labels=mapof(S)),
          spec=obj(accessModes=listof(enum("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")),
                   storageClassName=S, volumeMode=enum("Filesystem", "Block"), resources=RESOURCES))

# Kubernetes batch/v1 Job, the fields used: the pod template of above, with the restart policy a Job requires.
JOB = obj(["apiVersion", "kind", "metadata", "spec"], apiVersion=enum("batch/v1"), kind=enum("Job"),
          metadata=obj(["name"], name=S, namespace=S, labels=mapof(S)),
          spec=obj(["template"], backoffLimit=INT, activeDeadlineSeconds=INT, ttlSecondsAfterFinished=INT,
                   template=obj(["spec"], metadata=POD_TEMPLATE["fields"]["metadata"],
                                spec=obj(["containers", "restartPolicy"], **POD_TEMPLATE["fields"]["spec"]["fields"],
                                         restartPolicy=enum("Never", "OnFailure")))))


def violations(doc, schema, path="") -> list[str]:
    """Every place where ``doc`` leaves the schema: unknown field, wrong type, missing required."""
    if isinstance(schema, str):
        ok = {S: isinstance(doc, str), B: isinstance(doc, bool),
              INT: isinstance(doc, int) and not isinstance(doc, bool),
              N: isinstance(doc, (int, float)) and not isinstance(doc, bool),
              Q: (isinstance(doc, int) and not isinstance(doc, bool)) or
                 (isinstance(doc, str) and QUANTITY.match(doc) is not None)}[schema]
        return [] if ok else [f"{path}: {doc!r} is not a {schema}"]
    if "enum" in schema:
        return [] if doc in schema["enum"] else [f"{path}: {doc!r} is not one of {schema['enum']}"]
    if "list" in schema:
        if not isinstance(doc, list):
            return [f"{path}: {type(doc).__name__} is not a list"]
        return [v for i, x in enumerate(doc) for v in violations(x, schema["list"], f"{path}[{i}]")]
    if not isinstance(doc, dict):
        return [f"{path}: {type(doc).__name__} is not an object"]
    if "map" in schema:
        return [v for k, x in doc.items() for v in violations(x, schema["map"], f"{path}.{k}")]
    out = [f"{path}.{k}: required" for k in schema["required"] if k not in doc]
    for k, x in doc.items():
        if k not in schema["fields"]:
            out.append(f"{path}.{k}: unknown field")
        else:
            out += violations(x, schema["fields"][k], f"{path}.{k}")
    return out


# -- the files ---------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    lines = [x.split("#")[0].strip() for x in (ROOT / "constraints.txt").read_text().splitlines()]
    return dict(x.split("==") for x in lines if x)


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement(name: str):
    from packaging.requirements import Requirement

    (req,) = [r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == name]
    return req


def _pip_installs(path: Path) -> list[tuple[list[str], str | None]]:
    """Every `pip install` in a Makefile or Dockerfile: (what it installs, its -c file)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for cmd in line.split("&&"):
            argv = shlex.split(cmd)
            if "pip" not in argv or "install" not in argv[argv.index("pip"):]:
                continue
            args = iter(argv[argv.index("install") + 1:])
            targets, constraints = [], None
            for a in args:
                if a == "-c":
                    constraints = next(args)
                elif a == "-e":
                    targets.append(next(args))
                elif not a.startswith("-"):
                    targets.append(a)
            out.append((targets, constraints))
    return out


def _dockerfile() -> tuple[dict, list[tuple[str, str]]]:
    """(ARG defaults, [(instruction, argument)]) with line continuations joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    steps = [tuple(x.strip().split(None, 1)) for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    return args, [(op.upper(), a) for op, a in steps]


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())


@pytest.fixture(scope="module")
def pvc() -> dict:
    return yaml.safe_load((ROOT / "jobs" / "shared-volume.yaml").read_text())


def _pods(job) -> list[tuple[str, dict]]:
    c = job["spec"]["rayClusterSpec"]
    return [("head", c["headGroupSpec"])] + [(g["groupName"], g) for g in c["workerGroupSpecs"]]


def test_manifests_use_only_kuberay_and_kubernetes_fields_with_their_types(job, pvc):
    assert violations(job, RAYJOB) == []
    assert violations(pvc, PVC) == []
    # The schema itself catches what kubectl would refuse (each a mistake seen in RayJobs):
    broken = yaml.safe_load(yaml.safe_dump(job))
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0   # must be a string
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 0             # misspelt
    del broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"]            # required
    assert len(violations(broken, RAYJOB)) == 3


def test_image_ray_python_and_torch_agree_with_constraints_and_pyproject(job):
    pins, project = _pins(), _pyproject()
    args, steps = _dockerfile()
    (base,) = [a for op, a in steps if op == "FROM"]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    py = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"]).groups()
    assert base == f"rayproject/ray:{pins['ray']}-py{''.join(py)}-gpu"
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == pins["ray"]
    # torch: the pair of constraints.txt, installed first (test_installs_... checks every install).
    runs = [a for op, a in steps if op == "RUN"]
    torch_step = next(r for r in runs if "torch==" in r)
    for name in ("torch", "torchvision"):
        assert f"{name}=={pins[name]}" in shlex.split(torch_step)
    # Every image is this package's, tagged with its version.
    images = {c["image"] for _, g in _pods(job) for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1 and images.pop().endswith(f"/raystudy:{project['project']['version']}")


def test_paths_and_excludes_agree(job):
    from raystudy.submit import EXCLUDES

    _, steps = _dockerfile()
    (workdir,) = [a for op, a in steps if op == "WORKDIR"]
    assert any(op == "COPY" and a.split()[-2:] == [".", "./"] for op, a in steps)  # the repository, into WORKDIR
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert env["working_dir"] == workdir
    local = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["excludes"] == local["excludes"] == EXCLUDES
    # What is never uploaded is never baked into the image either.
    ignored = {x.strip().strip("/").removeprefix("**/") for x in (ROOT / ".dockerignore").read_text().splitlines()
               if x.strip() and not x.startswith("#")}
    assert {x.strip("/") for x in EXCLUDES} <= ignored, {x.strip("/") for x in EXCLUDES} - ignored


def test_entrypoint_study_on_the_claim_and_workers_that_fit_one_of_each_stage(job, pvc):
    from raystudy.cli import build_parser
    from raystudy.config import load_config
    from raystudy.study import STAGES

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/study.py"] and (ROOT / argv[1]).is_file()
    args = build_parser().parse_args(["run", *argv[2:]])
    cfg = load_config(ROOT / args.config, args.overrides)
    # The study folder is on the ReadWriteMany claim, mounted in every pod.
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for name, g in _pods(job):
        spec = g["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        mounts = [(m["mountPath"], claims.get(m["name"])) for c in spec["containers"] for m in c["volumeMounts"]]
        assert any(Path(args.study).is_relative_to(p) and claim == pvc["metadata"]["name"] for p, claim in mounts), name
    cluster = job["spec"]["rayClusterSpec"]
    workers = cluster["workerGroupSpecs"]
    # Groups that may shrink to 0 need the autoscaler, and the study must wait for it.
    if any(g["minReplicas"] == 0 for g in workers):
        assert cluster.get("enableInTreeAutoscaling") is True and cfg.ray.scale_up_wait_s > 0
    # One worker of every Ray stage fits one worker pod (what the resource check asks for).
    for g in workers:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpus = float(limits.get("nvidia.com/gpu", 0))
        for st in ("train", "generate", "knn"):
            what, cpus, need_gpus = STAGES[st].resources(cfg)
            assert cpus <= float(limits["cpu"]) and need_gpus <= gpus, (g["groupName"], what)
        if gpus:  # GPU pools are tainted and labelled: the pods must tolerate and select them
            spec = g["template"]["spec"]
            assert any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", [])) and spec.get("nodeSelector")


def test_the_package_asks_for_torch_ranges_that_hold_the_tested_pair():
    """pyproject's torch/torchvision are ranges (an exact pin would make `pip install raystudy` replace a
    cluster image's CUDA-matched torch); constraints.txt pins the tested pair inside them."""
    from packaging.version import Version

    pins = _pins()
    floors = {}
    for name in ("torch", "torchvision"):
        spec = _requirement(name).specifier
        assert {s.operator for s in spec} == {">=", "<"}, (name, str(spec))
        assert spec.contains(pins[name]), (name, str(spec), pins[name])
        floors[name] = Version(next(s.version for s in spec if s.operator == ">="))
        # pip takes an installed torch whose version is in the range, pre-releases included: NGC's
        # builds are versioned as pre-releases of their release (2.9.0a0+<commit>.nv25.10).
        ngc = f"{floors[name].major}.{floors[name].minor}.0a0+4d1a3e2.nv25.10"
        assert spec.contains(ngc, prereleases=True), (name, str(spec), ngc)
    # torchvision 0.(m + 15) is the one built for torch 2.m: the pinned pair and the floors are such pairs.
    for torch, vision in ((Version(pins["torch"]), Version(pins["torchvision"])), (floors["torch"], floors["torchvision"])):
        assert (torch.major, vision.major, vision.minor) == (2, 0, torch.minor + 15), (torch, vision)
    # The floor holds the newest torch API the code relies on: the fp32_precision switches (torch 2.9).
    assert "fp32_precision" in (ROOT / "raystudy" / "metrics" / "search.py").read_text()
    assert floors["torch"] >= Version("2.9.0a0")


def test_make_and_the_image_install_the_pinned_torch_pair_through_constraints():
    pins = _pins()
    for path in (ROOT / "Makefile", ROOT / "Dockerfile"):
        installs = [(t, c) for t, c in _pip_installs(path) if t != ["pip"]]  # `pip install --upgrade pip` aside
        assert installs and all(c == "constraints.txt" for _, c in installs), (path.name, installs)
        targets = [x for t, _ in installs for x in t]
        assert {"torch", "torchvision"} <= {x.split("==")[0] for x in targets}, (path.name, targets)
        for x in targets:  # an explicit version is the pinned one
            if "==" in x:
                name, version = x.split("==")
                assert pins[name] == version, (path.name, x)
        assert any(x == "." or x.startswith(".[") for x in targets), (path.name, targets)  # the package itself


def test_the_image_records_the_commit_it_was_built_from():
    """.dockerignore leaves .git out, so the commit comes in as build arguments that become the
    environment provenance.json reads; every documented `docker build` passes both."""
    from raystudy.provenance import ENV_COMMIT, ENV_DIRTY

    _, steps = _dockerfile()
    stage = steps[[op for op, _ in steps].index("FROM") + 1:]  # an ARG before FROM is not seen after it
    args = {a.split("=", 1)[0] for op, a in stage if op == "ARG"}
    env = dict(x.split("=", 1) for op, a in stage if op == "ENV" for x in shlex.split(a))
    for name in (ENV_COMMIT, ENV_DIRTY):
        assert name in args and env.get(name) == f"${{{name}}}", name
    assert ".git" in (ROOT / ".dockerignore").read_text().split()
    for doc in (ROOT / "Dockerfile", ROOT / "jobs" / "kuberay-rayjob.yaml", ROOT / "docs" / "guides" / "cluster.md"):
        text = re.sub(r"\\\n\s*#?", " ", doc.read_text())
        builds = [x for x in text.splitlines() if re.search(r"docker build\s+-", x)]
        assert builds, doc
        for b in builds:
            assert f"--build-arg {ENV_COMMIT}=$(git rev-parse HEAD)" in b and f"--build-arg {ENV_DIRTY}=" in b, (doc, b)


def test_the_gpu_study_searches_on_the_gpus_it_books(job):
    """configs/cifar10.yaml, as shipped and as the RayJob runs it: each knn actor books a GPU and
    searches with the torch backend on it (FAISS on the CPU would leave the booked GPU idle)."""
    from raystudy.cli import build_parser
    from raystudy.config import load_config

    args = build_parser().parse_args(["run", *shlex.split(job["spec"]["entrypoint"])[2:]])
    for cfg in (load_config(ROOT / "configs" / "cifar10.yaml"), load_config(ROOT / "configs" / "cifar10-paper.yaml"),
                load_config(ROOT / args.config, args.overrides)):
        assert cfg.knn.gpus_per_worker > 0 and cfg.knn.backend == "torch"
        assert cfg.generate.gpus_per_worker > 0 and cfg.train.gpus_per_trial > 0
    gpus = [float(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
            for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    assert any(n >= cfg.knn.gpus_per_worker for n in gpus)


def test_cifar10_states_its_sample_count_and_training_length_as_configured():
    import math

    from raystudy.config import load_config

    cfg = load_config(ROOT / "configs" / "cifar10.yaml")
    text = (ROOT / "configs" / "cifar10.yaml").read_text()
    steps = math.ceil(cfg.train.images / cfg.train.batch_size)
    assert f"{cfg.generate.n_samples:,} per set, two sets (eval, ref), so {2 * cfg.generate.n_samples:,} drawn" in text
    assert f"{cfg.train.images:,} images at batch {cfg.train.batch_size}, {steps:,} optimizer steps" in text
    # The paper's: 100 files of 512 samples per model; 500,000 iterations of its global batch of 128.
    assert f"{100 * 512:,} per model" in text and f"{500_000:,} iterations at a global batch of 128, {500_000 * 128:,}" in text


def test_the_paper_recipe_is_the_papers_settings():
    """configs/cifar10-paper.yaml against the reference's configs/cifar10.yaml, train_unet.py and
    run_generate.py (transcribed here by hand): 500,000 iterations at 128, lr 2e-4, EMA 0.9999,
    clipping at 1, dim 128 x (1, 2, 2, 2) with attention at 16 px, 2 res blocks, 100 x 512 samples."""
    from raystudy.config import load_config

    cfg = load_config(ROOT / "configs" / "cifar10-paper.yaml")
    assert (cfg.train.images, cfg.train.batch_size) == (500_000 * 128, 128)
    assert (cfg.train.lr, cfg.train.ema_decay, cfg.train.grad_clip) == (2e-4, 0.9999, 1.0)
    assert tuple(cfg.model.block_out_channels) == tuple(128 * m for m in (1, 2, 2, 2))
    # Attention where the feature map is 16 x 16: the level after one halving of 32.
    assert [32 // 2 ** i == 16 for i in range(4)] == list(cfg.model.attention)
    assert cfg.model.layers_per_block == 2 and cfg.model.num_train_timesteps == 1000
    assert cfg.generate.n_samples == 100 * 512 and cfg.generate.sampler == "ddpm"
    assert cfg.train.checkpoint_every == 2_500 * 128
    assert set(cfg.knn.metrics) == {"l2", "lpips-alex"} and cfg.knn.k == 5
    assert max(cfg.ks) == 50_000
    assert (ROOT / "raystudy" / "configs" / "cifar10-paper.yaml").read_bytes() == (
        ROOT / "configs" / "cifar10-paper.yaml").read_bytes()


def _mounts(pod_spec: dict) -> list[tuple[str, str | None]]:
    """(mount path, claim name) of every volume mount of a pod."""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"] if "persistentVolumeClaim" in v}
    return [(m["mountPath"], claims.get(m["name"])) for c in pod_spec["containers"] for m in c.get("volumeMounts", [])]


def test_the_cifar10_data_job_unpacks_onto_the_claim_where_the_study_reads(job, pvc):
    """jobs/cifar10-data-job.yaml runs `raystudy unpack cifar10` (as the CLI parses it) with the
    archive and the target on the claim, the target being the RayJob's data.path, in its image."""
    from raystudy.cli import build_parser
    from raystudy.config import load_config

    data_job = yaml.safe_load((ROOT / "jobs" / "cifar10-data-job.yaml").read_text())
    assert violations(data_job, JOB) == []
    spec = data_job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = [p for p, claim in _mounts(spec) if claim == pvc["metadata"]["name"]]
    assert mounts, "the Job does not mount the claim"
    # The shell script: wait for the archive, then the command; its variables are the container's env.
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert container["command"][:2] == ["sh", "-c"]
    script = re.sub(r'"?\$(\w+)"?', lambda m: env[m.group(1)], container["command"][2])
    (line,) = [x for x in script.splitlines() if "raystudy unpack" in x]
    argv = shlex.split(line)
    argv = argv[argv.index("raystudy") + 1:]
    args = build_parser().parse_args(argv)
    assert (args.command, args.dataset, args.md5) == ("unpack", "cifar10", None)  # the official MD5
    assert f"until [ -f {args.archive} ]" in script  # it waits for the same archive
    assert any(Path(args.archive).is_relative_to(p) and Path(args.to).is_relative_to(p) for p in mounts)
    # Where the study reads it: the RayJob's data.path, on the same claim.
    ray_args = build_parser().parse_args(["run", *shlex.split(job["spec"]["entrypoint"])[2:]])
    assert load_config(ROOT / ray_args.config, ray_args.overrides).data.path == args.to
    assert {container["image"]} == {c["image"] for _, g in _pods(job) for c in g["template"]["spec"]["containers"]}


def test_lpips_weights_are_in_the_image_where_lpips_looks_or_on_the_claim(job, monkeypatch):
    """A pod has no internet: the RayJob's lpips-alex finds its backbone in the image (the
    Dockerfile fetches it into torch's cache, at a TORCH_HOME it fixes), or knn.weights_dir names
    a folder on the claim."""
    import torchvision

    from raystudy.cli import build_parser
    from raystudy.config import load_config
    from raystudy.metrics.lpips import BACKBONE_FILES, hub_checkpoint_dir

    fname = BACKBONE_FILES["alex"]
    assert fname == "alexnet-owt-7be5be79.pth" == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    _, steps = _dockerfile()
    env = {}
    baked = None
    for op, a in steps:
        if op == "ENV":
            env.update(x.split("=", 1) for x in shlex.split(a))
        elif op == "RUN" and "alexnet(weights='IMAGENET1K_V1')" in a.replace('"', "'"):
            baked = dict(env), a
    assert baked is not None, "no RUN fetches torchvision's alexnet(weights='IMAGENET1K_V1')"
    env, run = baked
    # The fetch lands in $TORCH_HOME/hub/checkpoints, which is where lpips.py looks under that TORCH_HOME;
    # the RUN checks the file is there.
    monkeypatch.setenv("TORCH_HOME", env["TORCH_HOME"])
    assert f'test -s "$TORCH_HOME/hub/checkpoints/{fname}"' in run
    assert hub_checkpoint_dir() == Path(env["TORCH_HOME"]) / "hub" / "checkpoints"
    # And the image's own check: raystudy finds it there without downloading.
    assert any("load_backbone_state" in a and "download=False" in a for op, a in steps if op == "RUN")

    args = build_parser().parse_args(["run", *shlex.split(job["spec"]["entrypoint"])[2:]])
    cfg = load_config(ROOT / args.config, args.overrides)
    assert "lpips-alex" in cfg.knn.metrics
    if cfg.knn.weights_dir is not None:  # on the claim, mounted in every pod
        for name, g in _pods(job):
            assert any(Path(cfg.knn.weights_dir).is_relative_to(p) for p, _ in _mounts(g["template"]["spec"])), name
    else:  # the image of this Dockerfile (test_image_... checks the tag), which has the file
        assert all(c["image"].endswith("/raystudy:" + _pyproject()["project"]["version"])
                   for _, g in _pods(job) for c in g["template"]["spec"]["containers"])
    # The alternative is documented where the entrypoint is.
    assert "--set knn.weights_dir=/shared/" in (ROOT / "jobs" / "kuberay-rayjob.yaml").read_text()
