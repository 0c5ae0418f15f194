"""Kibana saved objects from the dashboard definitions (``agent.kibana.dashboards``).

Output: the objects of ``kibana/modelscribe.ndjson``, one JSON object per
line, data views first, then saved searches, then dashboards, so that an
import resolves every reference in one pass.

Guarantees, checked by tests/kibana:

- Importable into Kibana 8.8 and later, 9.x included (``OLDEST_KIBANA``):
  each object carries ``coreMigrationVersion`` and a ``typeMigrationVersion``
  no newer than what 8.8 knows for its type, so newer Kibanas migrate them
  up on import and 8.8 takes them as they are. Lens state uses the
  ``formBased`` datasource (Kibana 8.6 and later).
- The ``*JSON`` attributes (``panelsJSON``, ``optionsJSON``,
  ``searchSourceJSON``) are JSON strings, as the saved-objects API stores them.
- Panels are Lens charts by value (their state inside the dashboard, not
  separate visualization objects); their data view references are listed
  on the dashboard as ``<panel>:indexpattern-datasource-layer-<layer>``, and
  every reference names an object of the file.
- Ids are stable: the objects' own (``modelscribe-…``) and every panel,
  layer and column id derived from them (uuid5), so re-importing overwrites
  instead of duplicating, and the file is byte-identical for one definition.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable

from agent.kibana.dashboards import dashboards
from agent.kibana.model import DATA_VIEWS, Dashboard, Metric, Panel, SavedSearch
from agent import schema

OLDEST_KIBANA = (8, 8)
CORE_MIGRATION = "8.8.0"
# The latest migration each type had in Kibana 8.8: older is migrated up on
# import; newer would be refused by 8.8 as "from a newer version".
TYPE_MIGRATION = {"index-pattern": "8.0.0", "search": "8.0.0", "dashboard": "8.7.0"}
_NAMESPACE = uuid.UUID("6f1c2b4e-8f0e-4d0a-9a43-6d6f64656c73")
_COLUMNS = 48  # Kibana's dashboard grid width
_SERIES = {"line": "line", "area": "area", "bar": "bar_stacked"}


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _envelope(kind: str, object_id: str, attributes: dict[str, Any],
              references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "id": object_id, "attributes": attributes, "references": references,
            "coreMigrationVersion": CORE_MIGRATION, "typeMigrationVersion": TYPE_MIGRATION[kind],
            "managed": False}


def data_view(view: str) -> dict[str, Any]:
    view_id, pattern, name = DATA_VIEWS[view]
    return _envelope("index-pattern", view_id, {"title": pattern, "name": name, "timeFieldName": "@timestamp",
                                                "fields": "[]", "fieldFormatMap": "{}", "runtimeFieldMap": "{}"}, [])


def saved_search(search: SavedSearch) -> dict[str, Any]:
    for column in search.columns:
        if column not in schema.FIELDS:
            raise ValueError(f"saved search {search.id}: column {column!r} is not in the schema")
    source = {"query": {"query": search.kql(), "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return _envelope("search", search.id, {
        "title": search.title, "description": "", "columns": list(search.columns),
        "sort": [["@timestamp", "desc"]], "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)}},
        [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
          "id": DATA_VIEWS[search.view][0]}])


def _metric_column(metric: Metric) -> dict[str, Any]:
    column: dict[str, Any] = {"label": metric.title(), "customLabel": bool(metric.label), "dataType": "number",
                              "isBucketed": False, "scale": "ratio"}
    if metric.op == "count":
        return {**column, "operationType": "count", "sourceField": "___records___",
                "params": {"emptyAsNull": True}}
    column.update(operationType=metric.op, sourceField=metric.source)
    if metric.op == "percentile":
        column["params"] = {"percentile": metric.percentile}
    elif metric.op != "median":
        column["params"] = {"emptyAsNull": True}
    return column


def _lens(panel: Panel, key: str, view_id: str) -> tuple[dict[str, Any], list[str]]:
    """The Lens attributes of ``panel`` and its layer ids (for the references)."""
    layer = _uid(key, "layer")
    columns: dict[str, Any] = {}
    order: list[str] = []
    metric_ids = [_uid(key, "metric", str(i)) for i in range(len(panel.metrics))]
    split_id = _uid(key, "split") if panel.split else None
    time_id = _uid(key, "time") if panel.over_time else None
    if split_id:
        columns[split_id] = {
            "label": f"Top {panel.top} values of {panel.split}", "dataType": "string", "operationType": "terms",
            "sourceField": panel.split, "isBucketed": True, "scale": "ordinal",
            "params": {"size": panel.top, "orderBy": {"type": "column", "columnId": metric_ids[0]},
                       "orderDirection": "desc", "otherBucket": True, "missingBucket": False,
                       "parentFormat": {"id": "terms"}}}
        order.append(split_id)
    if time_id:
        columns[time_id] = {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
                            "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
                            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}
        order.append(time_id)
    for metric_id, metric in zip(metric_ids, panel.metrics):
        columns[metric_id] = _metric_column(metric)
        order.append(metric_id)
    layers = {layer: {"columns": columns, "columnOrder": order, "incompleteColumns": {}}}
    layer_ids = [layer]
    if panel.kind == "metric":
        vis_type, visualization = "lnsMetric", {"layerId": layer, "layerType": "data",
                                                "metricAccessor": metric_ids[0]}
    elif panel.kind == "table":
        vis_type = "lnsDatatable"
        visualization = {"layerId": layer, "layerType": "data",
                         "columns": [{"columnId": column_id, "isTransposed": False} for column_id in order]}
    else:
        vis_type = "lnsXY"
        xy_layers: list[dict[str, Any]] = [{
            "layerId": layer, "layerType": "data", "seriesType": _SERIES[panel.kind], "accessors": metric_ids,
            "xAccessor": time_id, "splitAccessor": split_id, "position": "top", "showGridlines": False}]
        if panel.thresholds:
            lines = _uid(key, "thresholds")
            line_ids = [_uid(key, "threshold", str(i)) for i in range(len(panel.thresholds))]
            layers[lines] = {"linkToLayers": [], "columnOrder": line_ids, "incompleteColumns": {}, "columns": {
                line_id: {"label": label, "customLabel": True, "dataType": "number",
                          "operationType": "static_value", "isStaticValue": True, "isBucketed": False,
                          "scale": "ratio", "params": {"value": str(value)}, "references": []}
                for line_id, (label, value) in zip(line_ids, panel.thresholds)}}
            xy_layers.append({"layerId": lines, "layerType": "referenceLine", "accessors": line_ids,
                              "yConfig": [{"forAccessor": line_id, "axisMode": "left", "lineStyle": "dashed",
                                           "color": "#E7664C"} for line_id in line_ids]})
            layer_ids.append(lines)
        visualization = {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
                         "preferredSeriesType": _SERIES[panel.kind], "layers": xy_layers}
    references = [{"type": "index-pattern", "id": view_id, "name": f"indexpattern-datasource-layer-{layer_id}"}
                  for layer_id in layer_ids]
    attributes = {"title": panel.title, "visualizationType": vis_type, "type": "lens", "references": references,
                  "state": {"visualization": visualization, "query": {"query": panel.kql(), "language": "kuery"},
                            "filters": [], "datasourceStates": {"formBased": {"layers": layers}},
                            "internalReferences": [], "adHocDataViews": {}}}
    return attributes, layer_ids


def _links(board: Dashboard, titles: dict[str, str]) -> str:
    items = " · ".join(f"[{titles[target]}](#/view/{target})" for target in board.links)
    return f"**{board.title}** — {board.description}\n\nOther dashboards: {items}"


def _place(widths: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Left-to-right, top-to-bottom positions for panels of (width, height)."""
    x = y = row_height = 0
    places = []
    for width, height in widths:
        if x + width > _COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        places.append((x, y))
        x += width
        row_height = max(row_height, height)
    return places


def dashboard(board: Dashboard, titles: dict[str, str]) -> dict[str, Any]:
    links_index = _uid(board.id, "links")
    panels: list[dict[str, Any]] = [{
        "type": "visualization", "panelIndex": links_index,
        "gridData": {"x": 0, "y": 0, "w": _COLUMNS, "h": 4, "i": links_index},
        "embeddableConfig": {"hidePanelTitles": True, "enhancements": {}, "savedVis": {
            "id": "", "title": "", "description": "", "type": "markdown", "uiState": {},
            "params": {"fontSize": 12, "openLinksInNewTab": False, "markdown": _links(board, titles)},
            "data": {"aggs": [], "searchSource": {"query": {"query": "", "language": "kuery"}, "filter": []}}}}}]
    references: list[dict[str, str]] = []
    sizes = [(48, 15) for _ in board.searches] + [(panel.width, panel.height) for panel in board.panels]
    places = iter(_place(sizes))
    for search in board.searches:
        index = _uid(board.id, "search", search.id)
        x, y = next(places)
        panels.append({"type": "search", "panelIndex": index, "panelRefName": f"panel_{index}",
                       "gridData": {"x": x, "y": y + 4, "w": 48, "h": 15, "i": index},
                       "embeddableConfig": {"enhancements": {}}})
        references.append({"name": f"{index}:panel_{index}", "type": "search", "id": search.id})
    for number, panel in enumerate(board.panels):
        key = f"{board.id}/{number}"
        index = _uid(key, "panel")
        view_id = DATA_VIEWS[panel.view][0]
        attributes, layer_ids = _lens(panel, key, view_id)
        x, y = next(places)
        panels.append({"type": "lens", "panelIndex": index, "title": panel.title,
                       "gridData": {"x": x, "y": y + 4, "w": panel.width, "h": panel.height, "i": index},
                       "embeddableConfig": {"attributes": attributes, "enhancements": {}}})
        references += [{"name": f"{index}:indexpattern-datasource-layer-{layer_id}", "type": "index-pattern",
                        "id": view_id} for layer_id in layer_ids]
    search_source = {"query": {"query": "", "language": "kuery"}, "filter": []}
    return _envelope("dashboard", board.id, {
        "title": board.title, "description": board.description, "panelsJSON": _json(panels),
        "optionsJSON": _json({"useMargins": True, "syncColors": False, "syncCursor": True,
                              "syncTooltips": False, "hidePanelTitles": False}),
        "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": _json(search_source)}}, references)


def saved_objects() -> list[dict[str, Any]]:
    boards = dashboards()
    titles = {board.id: board.title for board in boards}
    objects = [data_view(view) for view in DATA_VIEWS]
    objects += [saved_search(search) for board in boards for search in board.searches]
    objects += [dashboard(board, titles) for board in boards]
    return objects


def ndjson() -> str:
    return "".join(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n" for obj in saved_objects())
