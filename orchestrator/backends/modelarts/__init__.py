"""The Huawei Cloud ModelArts backend (OBS + ModelArts SDK + signed REST); see ``backend.py``."""
