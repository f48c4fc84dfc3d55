"""napari docks. The only subpackage that imports qtpy, napari or magicgui."""
