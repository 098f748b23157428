import sys

from coin_assets.synth.photos import main

sys.exit(main())
