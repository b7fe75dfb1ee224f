# streamseg: slim multi-stage image, runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamseg ./streamseg
COPY streamseg_bench ./streamseg_bench
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 streamseg
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/streamseg
USER streamseg
WORKDIR /home/streamseg
# 9108: Prometheus /metrics, /healthz, /readyz; 8000: the read API.
EXPOSE 9108 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status != 200)"
ENTRYPOINT ["streamseg"]
CMD ["run", "--config", "/etc/streamseg/production.yaml", "--no-progress"]
