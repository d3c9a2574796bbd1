"""CloudWatch on one machine: EMF metrics (`metrics`), PutMetricData/GetMetricData on local AWS
(`api`), alarm evaluation (`alarm_template` reads the template's alarms, `metric_math` parses
and evaluates metric math, `alarms` evaluates and reports), the CloudFormation reference
resolver they share (`references`), charts (`charts`) and the deployed dashboard on a local page
(`dashboard`, `dashboard_page/`)."""
