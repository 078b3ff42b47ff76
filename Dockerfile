# The image the cluster runs (jobs/kuberay-rayjob.yaml): Ray of the pinned version, this
# package, and the torch pair it is tested with (constraints.txt; the package itself accepts a
# range, so a site image's own torch stays).
#
#   docker build -t REGISTRY/raystudy:0.1.0 \
#       --build-arg RAYSTUDY_GIT_COMMIT=$(git rev-parse HEAD) \
#       --build-arg RAYSTUDY_GIT_DIRTY=$(git diff HEAD --quiet && echo false || echo true) .
#   docker push REGISTRY/raystudy:0.1.0
#
# The base image's Ray, Python (3.11) and CUDA-capable tag must match constraints.txt
# (ray==...) and pyproject.toml's requires-python: tests/unit/test_manifests.py checks it.
# torch 2.14.1's wheel brings its own CUDA 13.0 libraries (nvidia-* wheels), so the nodes need
# an NVIDIA driver of the R580 series or newer (CUDA 13's minimum; `nvidia-smi` shows it).
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

WORKDIR /home/ray/raystudy

# torch first, on its own layer: it is most of the image and changes least.
COPY --chown=ray:users constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1

# The LPIPS-alex backbone (alexnet-owt-7be5be79.pth), baked into torch's cache, where
# raystudy/metrics/lpips.py looks for it: the cluster's pods may have no internet. Fetched by a
# RUN rather than COPYed from beside the Dockerfile: the builder already reaches the internet for
# the pip installs, the user has no file to fetch first, and torchvision checks the download
# against the hash in its name. TORCH_HOME is fixed so that a pod run with another HOME
# (securityContext.runAsUser) finds the same file. Other backbones (VGG): knn.weights_dir on the
# shared volume (jobs/kuberay-rayjob.yaml). On its own layer, before the code: it never changes.
ENV TORCH_HOME=/home/ray/.cache/torch
RUN python -c "import torchvision; torchvision.models.alexnet(weights='IMAGENET1K_V1')" \
    && test -s "$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth"

# The repository stays at /home/ray/raystudy: the RayJob's runtime_env uploads it as the job's
# working directory, and its configs/ are what the entrypoint names.
COPY --chown=ray:users . ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "import raystudy, torch, ray; print(raystudy.__version__, torch.__version__, ray.__version__)" \
    && python -c "from raystudy.metrics.lpips import load_backbone_state as f; print(f('alex', download=False)[1])"

# The commit the image is built from, for each study's provenance.json: .dockerignore keeps
# .git out of the image, so the build arguments carry it (empty: unknown). Last, so that a
# new commit rebuilds no layer above.
ARG RAYSTUDY_GIT_COMMIT=
ARG RAYSTUDY_GIT_DIRTY=
ENV RAYSTUDY_GIT_COMMIT=${RAYSTUDY_GIT_COMMIT} RAYSTUDY_GIT_DIRTY=${RAYSTUDY_GIT_DIRTY}
