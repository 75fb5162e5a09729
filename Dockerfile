# idp for docker-compose.yml: gunicorn serving wsgi:app, migrations applied at start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 idp

COPY pyproject.toml README.md wsgi.py gunicorn.conf.py ./
COPY idp ./idp
COPY migrations ./migrations
COPY templates ./templates
# Editable, like the README's set-up: templates/ and migrations/ are read from /app.
RUN pip install -e . \
    && mkdir -p /app/keys /app/instance \
    && chown idp:idp /app/keys /app/instance

USER idp
EXPOSE 8000
CMD ["sh", "-c", "flask --app wsgi db upgrade && exec gunicorn -b 0.0.0.0:8000 wsgi:app"]
