# The phaseflow worker image (also runs the BigQuery emulator in docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY streams ./streams
COPY agents ./agents
COPY models ./models
COPY sinks ./sinks
# phaseflow/ holds a symlink to each folder above: the one name the image installs.
COPY phaseflow ./phaseflow
RUN pip install --no-cache-dir -c constraints.txt ".[local]"
USER nobody
ENV PHASEFLOW_DATA_DIR=/tmp/phaseflow
ENTRYPOINT ["phaseflow"]
CMD ["worker"]
