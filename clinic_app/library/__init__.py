"""The guideline library: ingestion (command line and upload jobs), lifecycle, index versions.

Domain operations for guideline admins, named ``<entity>_<action>`` like those in
the other packages' services. Every
change is audited in its own transaction; every change to what answers may cite is followed by
a new index version, published by a task after the change commits.

Modules: ``ingest`` (documents to guidelines and passages), ``index_versions`` (publish, roll
back), ``lifecycle`` (activate, supersede, delete), ``uploads`` (upload jobs), ``selectors``
(read side), ``views`` (the admin's pages), ``tasks`` (the background work), ``errors``.
"""
