from services.tools.server import main

main()
