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

# The repository stays at /home/ray/raystudy: the RayJob's runtime_env uploads it as the job's
# working directory, and its configs/ are what the entrypoint names.
COPY --chown=ray:users . ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "import raystudy, torch, ray; print(raystudy.__version__, torch.__version__, ray.__version__)"

# The commit the image is built from, for each study's provenance.json: .dockerignore keeps
# .git out of the image, so the build arguments carry it (empty: unknown). Last, so that a
# new commit rebuilds no layer above.
ARG RAYSTUDY_GIT_COMMIT=
ARG RAYSTUDY_GIT_DIRTY=
ENV RAYSTUDY_GIT_COMMIT=${RAYSTUDY_GIT_COMMIT} RAYSTUDY_GIT_DIRTY=${RAYSTUDY_GIT_DIRTY}
