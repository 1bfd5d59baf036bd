"""The DICOM and HL7 toolboxes (one module each; both exported here)."""

from simlab.tui.screens.dicom_toolbox import DicomToolboxScreen
from simlab.tui.screens.hl7_toolbox import HL7ToolboxScreen

__all__ = ["DicomToolboxScreen", "HL7ToolboxScreen"]
