"""From patients to demand: a patient-flow forecast built from the CDM (new starters ×
share still on treatment × units per active patient-month), checked against the dispensing
it must reproduce, backtested and combined with the sales-series forecast.

- :func:`patient_flow` — monthly starters, on-treatment and observed counts and units of a
  drug, aggregated in the engine (:class:`FlowSettings`: washout, permissible gap, measure,
  indication cohort);
- :func:`flow_check` — the flow identity on the history, month by month;
- :func:`forecast_patient_demand` — demand paths and quantiles, with :class:`Scenario`
  levers; :func:`backtest_patient_demand` — rolling origin vs the sales-series forecast and
  their combination;
- :func:`write_patient_demand` — a forecast folder ``pharmalab supply`` reads, plus the
  flow's tables; :func:`simulate_cdm` — a CDM with a known flow, for tests and benchmarks.
"""

from pharmalab.demand.flow import DemandInputError, FlowSettings, PatientFlow, patient_flow
from pharmalab.demand.forecast import (
    DemandBacktest,
    PatientDemand,
    backtest_patient_demand,
    forecast_patient_demand,
)
from pharmalab.demand.outputs import write_patient_demand
from pharmalab.demand.project import Scenario
from pharmalab.demand.rates import flow_check
from pharmalab.demand.simulate import simulate_cdm

__all__ = ["DemandBacktest", "DemandInputError", "FlowSettings", "PatientDemand",
           "PatientFlow", "Scenario", "backtest_patient_demand", "flow_check",
           "forecast_patient_demand", "patient_flow", "simulate_cdm", "write_patient_demand"]
