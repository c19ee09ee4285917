"""Every domain's tables, imported so the shared metadata (and Alembic) sees them all."""

from __future__ import annotations

from sellervault.access import models as access_models
from sellervault.accounts import models as accounts_models
from sellervault.audit import models as audit_models
from sellervault.crypto import models as crypto_models
from sellervault.deletion import models as deletion_models
from sellervault.jobs import models as jobs_models
from sellervault.monitoring import models as monitoring_models
from sellervault.notifications import models as notifications_models
from sellervault.records import models as records_models
from sellervault.store.base import Base

metadata = Base.metadata
DOMAIN_MODELS = (access_models, accounts_models, audit_models, crypto_models, deletion_models,
                 jobs_models, monitoring_models, notifications_models, records_models)
