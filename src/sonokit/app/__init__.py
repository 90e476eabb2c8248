"""The sonokit web app: upload a study, see every system's answer with its evidence (`sonokit app`).

- `runs`: find trained run folders by their model cards (the sidebar's model picker);
- `study`: one uploaded file through every chosen system, as plain data (`analyse_upload`); each system is a
  module of its own (`quality`, `echo`, `classify`, `valve`), the runs are loaded by `models`, the sidebar's
  choices are `choices`, masking is `images` and one-line error messages `failures`;
- `figures`, `report`: the LV area chart, the predictions CSV and the one-page HTML report;
- `main`: the Streamlit script that lays out the page.
Importing this package does not import Streamlit or torch.
"""
