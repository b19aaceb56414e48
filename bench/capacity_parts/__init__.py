"""bench/capacity.py, split by concern (the script itself parses the command line and
picks the role a process plays):

- `room`: a room's load (the two clips) and what "holds" means;
- `baseline_server`, `project_server`: the two server processes under test;
- `clients`: a process of aiortc callers or agents;
- `measure`: one server process with its two client processes, measured over a window;
- `steps`: baseline, project ramp and soak, in order;
- `janus`: the Janus cells (a Janus process, VideoRoom clients) and their summary;
- `report`: the summary (`--json`) and the table.
"""
