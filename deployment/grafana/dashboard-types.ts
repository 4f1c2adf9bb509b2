// The type deployment/grafana/stream-processor.json must satisfy, built from Grafana's own generated types
// (@grafana/schema, pinned in package-lock.json): the dashboard model (schemaVersion 42), and for each panel the
// options and field config of its plugin (timeseries, stat, state-timeline), so a misspelt key, a missing required
// option, a wrong type or an unknown enum value is an error.
//
// tests/deployment/monitoring_tools.py type-checks the JSON with `tsc --strict` by writing
//     export const dashboard: StreamProcessorDashboard = <the JSON>;
// next to a copy of this file, so the JSON is checked as a fresh object literal: excess-property checks apply
// everywhere (plain `import x from "./x.json"` would widen every string and check nothing of the kind).
//
// On top of Grafana's schema this project requires: every panel and query on the `${datasource}` variable of
// type prometheus, an id, a title and a grid position on every panel, and Prometheus queries with `expr`.

import type * as schema from '@grafana/schema';
import type * as raw from '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as statetimeline from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** A type as it appears in JSON: a string enum becomes the union of its values (JSON has no enums). */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** The dashboard's data source: the `datasource` variable, a Prometheus. */
export interface PrometheusRef {
  type: 'prometheus';
  uid: '${datasource}';
}

/**
 * A Prometheus query (Grafana's Prometheus data source query model; @grafana/schema no longer ships it, these
 * are its fields from the data source's dataquery schema).
 */
export interface PrometheusQuery extends Omit<schema.DataQuery, 'datasource'> {
  datasource: PrometheusRef;
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  exemplar?: boolean;
  editorMode?: 'code' | 'builder';
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
}

/** Field config whose `custom` part is exactly the panel plugin's (Grafana's allows any extra key there). */
export interface FieldConfigSource<Custom> extends Omit<raw.FieldConfigSource, 'defaults'> {
  defaults: Omit<raw.FieldConfig, 'custom'> & { custom?: Custom };
}

type PanelCommon = Omit<
  schema.Panel,
  'type' | 'id' | 'title' | 'gridPos' | 'datasource' | 'options' | 'fieldConfig' | 'targets'
> & {
  id: number;
  title: string;
  gridPos: raw.GridPos;
  datasource: PrometheusRef;
  targets: PrometheusQuery[];
};

type PanelOf<Type extends string, Options, Custom> = PanelCommon & {
  type: Type;
  options: Options;
  fieldConfig: FieldConfigSource<Custom>;
};

export type TimeSeriesPanel = PanelOf<'timeseries', timeseries.Options, timeseries.FieldConfig>;
export type StatPanel = PanelOf<'stat', stat.Options, Record<string, never>>;
export type StateTimelinePanel = PanelOf<'state-timeline', statetimeline.Options, statetimeline.FieldConfig>;
export type DashboardPanel = TimeSeriesPanel | StatPanel | StateTimelinePanel;

export type DashboardRow = Omit<raw.RowPanel, 'panels' | 'title' | 'gridPos'> & {
  title: string;
  gridPos: raw.GridPos;
  panels: DashboardPanel[]; // a collapsed row holds its panels
};

export type StreamProcessorDashboard = Json<
  Omit<schema.Dashboard, 'panels' | 'schemaVersion' | 'templating' | 'title' | 'uid'> & {
    title: string;
    uid: string;
    schemaVersion: 42;
    templating: { list: schema.VariableModel[] };
    panels: Array<DashboardPanel | DashboardRow>;
  }
>;
