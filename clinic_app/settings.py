"""Django settings. Every value comes from the environment (`.env.example`, docs/settings.md)."""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from clinic_app.env import (
    SettingError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
# Production (docker-compose) sets this: both keys must then come from the environment.
REQUIRE_SECRET_KEY = env_bool("REQUIRE_SECRET_KEY", False)
_KEY_HELP = (
    "set SECRET_KEY to a random value of 50+ characters "
    "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or run `make setup`, "
    "which writes one to var/secret_key"
)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and REQUIRE_SECRET_KEY:
    raise SettingError(f"SECRET_KEY must be set in production (REQUIRE_SECRET_KEY=1): {_KEY_HELP}")
if not SECRET_KEY and (VAR_DIR / "secret_key").exists():
    # Embedded default: a per-installation key kept under var/ (written by `make setup`).
    SECRET_KEY = (VAR_DIR / "secret_key").read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise SettingError(
            f"No SECRET_KEY in the environment or {VAR_DIR / 'secret_key'}: {_KEY_HELP}"
        )
    # Development only: sessions and signed values last as long as this process.
    SECRET_KEY = secrets.token_urlsafe(50)
# The same bar as `check --deploy` (security.W009): a short or Django-generated placeholder key
# lets anyone who guesses it forge sessions and password-reset links.
if not DEBUG and (
    len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure")
):
    raise SettingError(
        f"SECRET_KEY is too weak (under 50 characters or a placeholder): {_KEY_HELP}"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000"
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # sign-in throttling (AccessAttempt tables; `manage.py axes_reset`)
    "csp",  # Content-Security-Policy header
    "clinic_app.apps.ClinicAppConfig",
]

MIDDLEWARE = [
    # First, so that every later record of the request carries its id.
    "clinic_app.core.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "clinic_app.accounts.sessions.SessionLifetimeMiddleware",
    "clinic_app.core.middleware.ActingUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "clinic_app.urls"
ASGI_APPLICATION = "clinic_app.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clinic_app.accounts.context_processors.roles",
            ]
        },
    }
]

# --- Database: SQLite by default, PostgreSQL (or any dj-database-url URL) with DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "clinic.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: task queue, channel layer and cache. Unset: everything in-process.
REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYER_PREFIX = env_str(
    "CHANNEL_LAYER_PREFIX",
    "clinic-db" + (REDIS_URL.rstrip("/").rsplit("/", 1)[-1] if REDIS_URL.count("/") > 2 else "0"),
)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # redis-py 8's default 5 s socket timeout races the 5 s blocking pop: keep it above.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                # Redis pub/sub ignores the database number: deployments sharing a server need
                # their own prefix, or they receive each other's answer events.
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: with REDIS_URL tasks go to worker processes; without it they run in-process, on a
# thread pool so the websocket consumer never blocks (see clinic_app.answers.tasks.enqueue).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_INPROCESS = not CELERY_BROKER_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
# Guideline ingestion jobs may run for hours (a 37K-record import embeds ~400K passages).
INGEST_TASK_TIME_LIMIT = env_int("INGEST_TASK_TIME_LIMIT", 6 * 3600, minimum=60)
# How long Redis waits before handing an unacknowledged task to another worker: only matters
# when a whole worker is lost (a killed worker child's task is requeued at once). Above the
# answer task's limit, so a running answer is never handed out twice; a long ingestion job may
# be, and its heartbeat tells the second delivery to leave it alone.
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300, minimum=CELERY_TASK_TIME_LIMIT + 1
)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_IGNORE_RESULT = True

# --- Retrieval
INDEX_DIR = Path(env_str("INDEX_DIR", str(VAR_DIR / "index")))
EMBEDDER_MODEL = env_str("EMBEDDER_MODEL", "bundled")
EMBEDDER_DEVICE = env_str("EMBEDDER_DEVICE", "cpu")
# auto: bfloat16 where the CPU computes it natively (AVX512-BF16/AMX) or on CUDA, else float32.
EMBEDDER_DTYPE = env_choice("EMBEDDER_DTYPE", "auto", ("auto", "bfloat16", "float32"))
# Vectors of the demo corpus computed ahead of time (retrieval/vector_seed.py): used only for the
# identical texts and the identical embedder; empty: embed everything.
EMBEDDING_SEED = env_str("EMBEDDING_SEED", str(BASE_DIR / "clinic_app" / "demo_vectors.npz"))
CHUNK_MAX_TOKENS = env_int("CHUNK_MAX_TOKENS", 200, minimum=32)
RETRIEVAL_TOP_K = env_int("RETRIEVAL_TOP_K", 5, minimum=1)
# Cosine similarity below which the best passage is not evidence enough to answer.
RETRIEVAL_MIN_SCORE = env_float("RETRIEVAL_MIN_SCORE", 0.40)
FAISS_THREADS = env_int("FAISS_THREADS", 1, minimum=1)
# Refuse when the question names a specialised term the library never uses, or a population
# (children, pregnancy, breastfeeding) no retrieved passage mentions (retrieval/coverage.py).
COVERAGE_CHECK = env_choice("COVERAGE_CHECK", "on", ("on", "off"))
# Words below this Zipf frequency in general English count as specialised (apixaban 1.2).
COVERAGE_RARE_ZIPF = env_float("COVERAGE_RARE_ZIPF", 3.0)
# Show the guideline's sentences but write no summary when two or more of the question's less
# common words appear in no retrieved passage (retrieval/coverage.py, terms_unmentioned).
SUMMARY_COVERAGE_CHECK = env_choice("SUMMARY_COVERAGE_CHECK", "on", ("on", "off"))
# score (dense 0.8) chosen on the PubMedQA dev split (bench/retrieval.py, docs/retrieval.md).
RETRIEVAL_FUSION = env_choice("RETRIEVAL_FUSION", "score", ("score", "rrf", "dense", "bm25"))
# Cross-encoder reranking of the best RERANKER_CANDIDATES fused passages (a local path or a hub
# id, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2); empty: off. Runs on EMBEDDER_DEVICE/DTYPE.
RERANKER_MODEL = env_str("RERANKER_MODEL", "")
RERANKER_CANDIDATES = env_int("RERANKER_CANDIDATES", 20, minimum=1)
# flat = exact search; hnsw = approximate; auto = HNSW from 200K passages.
INDEX_KIND = env_choice("INDEX_KIND", "auto", ("auto", "flat", "hnsw"))
# Where exact searches run: "auto" uses a GPU when faiss-gpu sees one (the production worker
# image), "cpu" never does, "cuda"/"cuda:N" requires one.
FAISS_DEVICE = env_str("FAISS_DEVICE", "auto")
if FAISS_DEVICE not in ("auto", "cpu", "cuda") and not FAISS_DEVICE.startswith("cuda:"):
    raise SettingError(f"FAISS_DEVICE={FAISS_DEVICE!r}: use auto, cpu, cuda or cuda:N")

# --- Inference
# embedded: the in-process model on the fastest engine installed here (llama.cpp when
# llama-cpp-python is built, else transformers); llamacpp / transformers force one; vllm: server.
INFERENCE_BACKEND = env_choice(
    "INFERENCE_BACKEND", "embedded", ("embedded", "llamacpp", "transformers", "vllm")
)
PROMPT_PROFILE = env_choice("PROMPT_PROFILE", "", ("", "chatml", "meditron"))
MODELS_DIR = Path(env_str("MODELS_DIR", str(VAR_DIR / "models")))
EMBEDDED_MODEL = env_choice(
    "EMBEDDED_MODEL",
    "qwen2.5-coder-0.5b-instruct",
    ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"),
)
# auto: bf16 where the CPU computes it natively; elsewhere float32 (transformers) or the shipped
# quantised GGUF (llama.cpp). quantized is llama.cpp only.
EMBEDDED_MODEL_DTYPE = env_choice(
    "EMBEDDED_MODEL_DTYPE", "auto", ("auto", "bfloat16", "float32", "quantized", "q8_0")
)
TORCH_THREADS = env_int("TORCH_THREADS", 0, minimum=0)
VLLM_BASE_URL = env_str("VLLM_BASE_URL", "http://127.0.0.1:8001")
VLLM_MODEL = env_str("VLLM_MODEL", "epfl-llm/meditron-7b")
VLLM_API_KEY = env_str("VLLM_API_KEY")
VLLM_CONTEXT_TOKENS = env_int("VLLM_CONTEXT_TOKENS", 2048, minimum=256)
VLLM_FIRST_TOKEN_TIMEOUT = env_float("VLLM_FIRST_TOKEN_TIMEOUT", 60.0)
VLLM_TOTAL_TIMEOUT = env_float("VLLM_TOTAL_TIMEOUT", 300.0)
# Per-sentence check that cited passages support each sentence: lexical (numbers, doses, drug
# names, negation; macro-F1 0.94 on tests/inference/data/support_labelled.jsonl), combined
# (adds MiniLM similarity; 0.93 there) or off.
SUPPORT_CHECK = env_choice("SUPPORT_CHECK", "lexical", ("lexical", "combined", "off"))
ANSWER_MAX_TOKENS = env_int("ANSWER_MAX_TOKENS", 320, minimum=16)
# What the model reads of each source: "passages" (whole), "excerpts" (each passage cut to its
# sentences that best answer the question, PROMPT_EXCERPT_TOKENS in all: a CPU reads a prompt
# at 40-100 tokens/s, so whole passages cost 15-20 s before the first word), or "auto": excerpts
# for an in-process model on a CPU, whole passages for vLLM or a GPU (docs/performance.md).
PROMPT_SOURCES = env_choice("PROMPT_SOURCES", "auto", ("auto", "passages", "excerpts"))
PROMPT_EXCERPT_TOKENS = env_int("PROMPT_EXCERPT_TOKENS", 240, minimum=32)
# "What the guidelines say": how many verbatim sentences of the sources lead each answer.
EVIDENCE_MAX_ITEMS = env_int("EVIDENCE_MAX_ITEMS", 3, minimum=1)
# A summary with more than this share of its sentences flagged (unsupported or uncited), or
# with no words, is folded away behind the quotes ("rely on the evidence above").
SUMMARY_WITHHOLD_SHARE = env_float("SUMMARY_WITHHOLD_SHARE", 0.5)
if not 0.0 <= SUMMARY_WITHHOLD_SHARE <= 1.0:
    raise SettingError(f"SUMMARY_WITHHOLD_SHARE={SUMMARY_WITHHOLD_SHARE}: use a share from 0 to 1")
# Quality page: a recorded evaluation figure that moved this much (an absolute share, 0.05 = five
# points) the wrong way since the previous run on the same dataset is highlighted as a drop.
QUALITY_DROP_THRESHOLD = env_float("QUALITY_DROP_THRESHOLD", 0.05)
if not 0.0 <= QUALITY_DROP_THRESHOLD <= 1.0:
    raise SettingError(f"QUALITY_DROP_THRESHOLD={QUALITY_DROP_THRESHOLD}: use a share from 0 to 1")
QUESTION_MAX_CHARS = env_int("QUESTION_MAX_CHARS", 1000, minimum=20)
# Per clinician: answers pending or streaming at once, and questions per rolling minute (counted
# in the database, so the limit holds across server processes). 0: no limit.
QUESTION_MAX_CONCURRENT = env_int("QUESTION_MAX_CONCURRENT", 2, minimum=0)
QUESTION_RATE_PER_MINUTE = env_int("QUESTION_RATE_PER_MINUTE", 10, minimum=0)
# Conversations: questions in one thread at most (the first and its follow-ups).
THREAD_MAX_TURNS = env_int("THREAD_MAX_TURNS", 8, minimum=1)
# How a follow-up is searched for (retrieval/followup.py, docs/conversations.md): "fallback" (its
# own words; the previous question with it only when they find nothing relevant enough), chosen
# on the follow-up set (hit@5 1.00 vs alone 0.93, previous 0.71); or "alone", "previous",
# "thread", "fused".
FOLLOW_UP_QUERY = env_choice(
    "FOLLOW_UP_QUERY", "fallback", ("alone", "previous", "thread", "fused", "fallback")
)
STREAM_FLUSH_MS = env_int("STREAM_FLUSH_MS", 75, minimum=1)
# The text streamed so far is saved (a snapshot) at most this often; a reload or a gap resumes
# from it. (Named STREAM_CHECKPOINT_MS before 2026-12.)
STREAM_SNAPSHOT_MS = env_int("STREAM_SNAPSHOT_MS", 250, minimum=0)
# Attempts at one answer; a task is redelivered when its worker dies mid-answer.
ANSWER_MAX_ATTEMPTS = env_int("ANSWER_MAX_ATTEMPTS", 2, minimum=1)

DISCLAIMER = env_str(
    "DISCLAIMER",
    "Decision support for qualified clinicians only. This answer is generated by a language "
    "model from the cited guideline passages and may be incomplete or wrong; it is not a "
    "substitute for clinical judgment. Verify against the sources before acting.",
)

# --- Auth and security
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"  # the home view sends each role to its own page
LOGOUT_REDIRECT_URL = "login"
# A session ends this long after sign-in, or after this long without a request or websocket
# message (clinic_app.accounts.sessions: HTTP middleware and the websocket consumer alike).
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 12 * 3600, minimum=1)
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 30 * 60, minimum=1)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
# Per websocket: answers followed at once, and messages per second (past it: dropped, error).
WS_MAX_GROUPS_PER_SOCKET = env_int("WS_MAX_GROUPS_PER_SOCKET", 20, minimum=1)
WS_MAX_MESSAGES_PER_SECOND = env_int("WS_MAX_MESSAGES_PER_SECOND", 10, minimum=1)
SESSION_COOKIE_HTTPONLY = True
SECURE_COOKIES = env_bool("SECURE_COOKIES", False)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Behind HTTPS (SECURE_COOKIES=1) browsers are told to keep to HTTPS and plain HTTP is redirected,
# except /healthz and /readyz, which load balancers probe over plain HTTP.
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000 if SECURE_COOKIES else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
# Allows submitting the domain to browsers' preload lists; nothing changes until someone does.
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_SSL_REDIRECT = SECURE_COOKIES
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# A TLS-terminating proxy's header that marks HTTPS requests, as "HTTP_X_FORWARDED_PROTO,https";
# empty: off. Set it only if the proxy overwrites that header on every request.
_PROXY_SSL_HEADER = env_list("SECURE_PROXY_SSL_HEADER", "")
if _PROXY_SSL_HEADER and len(_PROXY_SSL_HEADER) != 2:
    raise SettingError(
        "SECURE_PROXY_SSL_HEADER must be HEADER,VALUE, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = (
    (_PROXY_SSL_HEADER[0], _PROXY_SSL_HEADER[1]) if _PROXY_SSL_HEADER else None
)
# Reverse proxies whose X-Forwarded-For is believed (IP addresses or CIDR networks). A request's
# client address is the right-most X-Forwarded-For entry that is not one of them, and only when
# the connection itself comes from one (clinic_app.core.client_ip); empty: the connecting address.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as _exc:
        raise SettingError(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network (e.g. 10.0.0.0/8)"
        ) from _exc
# No inline script or style anywhere: an injected <script> or on*= attribute does not run.
# Websockets go to this same origin, which 'self' covers. Downloaded guideline originals set a
# stricter policy of their own (guideline_views.guideline_original), which is kept.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes refuses sign-ins after LOGIN_FAILURE_LIMIT failures for one username from one client
# address, for LOGIN_COOLOFF_MINUTES after the last failure. Keyed on both together: locking by
# address alone would lock out a whole hospital behind one NAT, by username alone would let
# anyone lock a colleague out from elsewhere. Admins unlock with `manage.py axes_reset_username`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out sign-ins before checking
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_COOLOFF_MINUTES = env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "clinic_app.core.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "clinic_app.accounts.login_lockout.login_locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # sign-ins and sign-outs are already in the audit trail
AXES_VERBOSE = False  # no start-up banner in every command's output
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
# Where the Django admin lives: a deployment may move it off the path every scanner tries.
ADMIN_URL_PATH = env_str("ADMIN_URL_PATH", "admin/")
if not ADMIN_URL_PATH.endswith("/") or ADMIN_URL_PATH.startswith("/") or ADMIN_URL_PATH == "/":
    raise SettingError(f"ADMIN_URL_PATH={ADMIN_URL_PATH!r} must look like 'admin/' (no leading /)")

# --- Guideline uploads: checked before the body is read (ASGI) and again while it is stored.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 512_000_000, minimum=1024)
UPLOAD_MAX_FILES = env_int("UPLOAD_MAX_FILES", 50, minimum=1)
# Each uploaded file is parsed in a child process with these limits (a PDF bomb fails its job).
PARSE_TIMEOUT_S = env_int("PARSE_TIMEOUT_S", 300, minimum=5)
PARSE_MEMORY_MB = env_int("PARSE_MEMORY_MB", 1536, minimum=256)
FILE_UPLOAD_TEMP_DIR = None  # large uploads stream to temporary files, never into memory

# --- Audit trail: signed checkpoints of the hash chain's head, exported outside the database.
# The key signs checkpoints (HMAC-SHA256). Keep it, and the export file, where the database's
# users cannot reach. Production (REQUIRE_SECRET_KEY=1) must give its own: one derived from
# SECRET_KEY falls with it. Elsewhere, unset, one is derived from SECRET_KEY.
AUDIT_CHECKPOINT_KEY = env_str("AUDIT_CHECKPOINT_KEY")
if REQUIRE_SECRET_KEY and len(AUDIT_CHECKPOINT_KEY) < 32:
    raise SettingError(
        "AUDIT_CHECKPOINT_KEY must be set in production (REQUIRE_SECRET_KEY=1) to a random value "
        "of 32+ characters, unlike SECRET_KEY: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
if AUDIT_CHECKPOINT_KEY and AUDIT_CHECKPOINT_KEY == SECRET_KEY:
    raise SettingError("AUDIT_CHECKPOINT_KEY must differ from SECRET_KEY")
AUDIT_CHECKPOINT_EVERY = env_int("AUDIT_CHECKPOINT_EVERY", 100, minimum=0)
AUDIT_CHECKPOINT_FILE = env_str(
    "AUDIT_CHECKPOINT_FILE", str(VAR_DIR / "audit" / "checkpoints.jsonl")
)
AUDIT_EXPORT_MAX_ROWS = env_int("AUDIT_EXPORT_MAX_ROWS", 100_000, minimum=1)

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# plain: "time level logger message"; json: one JSON object per line with request_id, answer_id
# and job_id fields (clinic_app/core/logs.py). Either way records carry ids, never question text.
# Prometheus metrics (clinic_app/observability/metrics.py) at /<METRICS_PATH>: with
# METRICS_TOKEN, scrapers send it as a bearer token; without one, only loopback clients are
# answered.
METRICS_PATH = env_str("METRICS_PATH", "metrics").strip("/")
METRICS_TOKEN = env_str("METRICS_TOKEN")
if not METRICS_PATH:
    raise SettingError("METRICS_PATH must not be empty")
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "clinic_app.core.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "clinic_app.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
