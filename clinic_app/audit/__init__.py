"""The tamper-evident audit trail: the hash chain (``chain``, no Django), writing and verifying
it (``record``), the database guards that keep it append-only (``triggers``), signed chain-head
checkpoints, exports, and the auditor's pages (``selectors``, ``views``)."""
