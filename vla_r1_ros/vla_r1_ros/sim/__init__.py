"""The simulated workcell (PyBullet): table, Franka Panda, tray, objects, RGB-D camera."""
