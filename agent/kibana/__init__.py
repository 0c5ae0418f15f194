"""Kibana: the dashboards modelscribe ships and the command that installs them.

    model       Panel, Metric, Filter, SavedSearch, Dashboard: one definition
                per panel, giving both its Lens state and its search
    dashboards  the five dashboards (the one definition of kibana/)
    render      saved objects (.ndjson) for Kibana 8.8+ and 9.x
    importer    `modelscribe setup dashboards`: the saved-objects import API

No Kibana runs in the tests (none can run on the build machines): the
fields, the searches and the import request are checked against the real
Elasticsearch node and a recording HTTP server instead (tests/kibana).
"""
