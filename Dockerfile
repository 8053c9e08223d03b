# One image for the proxy (`miroir-proxy`), the admin CLI (`miroir`) and the operator
# (`miroir-operator`). Build: docker build -t miroir/miroir:0.1.0 .
# The base is pinned to the Python the project is developed and tested on.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/miroir
WORKDIR /src
# The same pyproject.toml as `make setup`, without the dev extra.
COPY pyproject.toml README.md ./
COPY proxy proxy
COPY devnode devnode
COPY operator operator
RUN /opt/miroir/bin/pip install --no-compile .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 miroir \
 && useradd --system --uid 10001 --gid miroir --no-create-home --shell /usr/sbin/nologin miroir
COPY --from=build /opt/miroir /opt/miroir
ENV PATH=/opt/miroir/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The entry points the chart and the operator's builders run; the build fails without them.
RUN for command in miroir-proxy miroir miroir-operator; do \
      command -v "$command" >/dev/null || { echo "missing entry point $command"; exit 1; }; \
    done
USER 10001:10001
EXPOSE 7700 9090 8080
CMD ["miroir-proxy", "--config", "/etc/miroir/miroir.yaml"]
